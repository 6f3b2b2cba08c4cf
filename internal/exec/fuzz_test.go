package exec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The files the supervisor and runner exchange are read back from disk (a
// later agent version, an operator's editor, a full disk): every decoder must
// reject junk with an error, never panic.

func FuzzDecodeSpec(f *testing.F) {
	f.Add([]byte(`{"version":1,"task":{"ID":"a","Command":["true"]},"cgroup":{"driver":"off"}}`))
	f.Add([]byte(`{"version":1,"task":{"ID":"a","Command":["true"],"MilliCPU":500},"cgroup":{"driver":"v2","dir":"/sys/fs/cgroup/dure/a"}}`))
	f.Add([]byte(`{"version":1,"task":{"ID":"a","Command":["sh"]},"cgroup":{"driver":"v1","cpu_dir":"/c/a","memory_dir":"/m/a","cpu_home":"/c","memory_home":"/m"}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeSpec(data)
		if err != nil {
			return
		}
		// Whatever passed must be safe to act on.
		if validateSpec(s.Task) != nil {
			t.Fatalf("decodeSpec accepted an invalid task: %+v", s.Task)
		}
		for _, d := range s.Cgroup.dirs() {
			if d == "" || d[0] != '/' {
				t.Fatalf("decodeSpec accepted a relative cgroup dir %q", d)
			}
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	seed, _ := encodeStatus(Result{ExitCode: 137, Signal: "SIGKILL", OOMKilled: true, StartedAt: time.Unix(1, 0).UTC(), FinishedAt: time.Unix(2, 0).UTC()})
	f.Add(seed)
	f.Add([]byte(`{"exit_code":0,"finished_at":"2020-01-01T00:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"exit_code":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeStatus(data)
		if err != nil {
			return
		}
		again, err := encodeStatus(r)
		if err != nil {
			t.Fatalf("cannot re-encode %+v: %v", r, err)
		}
		r2, err := decodeStatus(again)
		if err != nil {
			t.Fatalf("re-encoded status does not decode: %v", err)
		}
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Fatalf("round trip changed the result (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeHandshake(f *testing.F) {
	f.Add(encodeHandshakeOK(time.Unix(0, 1700000000123456789)))
	f.Add(encodeHandshakeFail("cgroup: write \"1\" to x: no such file\nsecond line"))
	f.Add([]byte("ok -5\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		at, failure, err := decodeHandshake(data)
		if err == nil && failure == "" && at.IsZero() {
			t.Fatalf("%q: no error, no failure and no start time", data)
		}
		if err == nil && failure == "" {
			if got, _, err := decodeHandshake(encodeHandshakeOK(at)); err != nil || !got.Equal(at) {
				t.Fatalf("round trip of %v gave %v, %v", at, got, err)
			}
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte("32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"))
	f.Add([]byte("1 2 3 4 5 6 - cgroup"))
	f.Add([]byte(`1 2 3 / /a\0 x - cgroup2 c rw`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range parseMountinfo(data) {
			if m.fstype != "cgroup" && m.fstype != "cgroup2" {
				t.Fatalf("non-cgroup mount returned: %+v", m)
			}
		}
		_, _ = ownV1Cgroup(parseMountinfo(data), data, "cpu")
	})
}

func FuzzDecodeStop(f *testing.F) {
	f.Add([]byte("10000000000"))
	f.Add([]byte("-1"))
	f.Add([]byte(" 5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := decodeStop(data)
		if err == nil && d < 0 {
			t.Fatalf("negative grace %v accepted from %q", d, data)
		}
	})
}

func FuzzParseKeyedCounter(f *testing.F) {
	f.Add([]byte("oom 1\noom_kill 2\n"), "oom_kill")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		if n, ok := parseKeyedCounter(data, key); ok && n < 0 {
			t.Fatalf("negative counter %d", n)
		}
	})
}

// The node daemon's protocol and journal are read from a socket and a file:
// their decoders must reject junk with an error, and whatever they accept
// must be safe to act on.

func FuzzDecodeRequest(f *testing.F) {
	for _, r := range []request{
		{Seq: 1, Op: opHello, Version: protoVersion},
		{Seq: 2, Op: opStart, Task: &TaskSpec{ID: "a", Command: []string{"true"}, Env: []string{"A=b"}, MilliCPU: 500}, Cgroup: &cgroupSpec{Driver: cgroupV2, Dir: "/sys/fs/cgroup/dure/a"}},
		{Seq: 3, Op: opStop, ID: "a", Grace: time.Second},
		{Seq: 4, Op: opQuery, ID: "a"},
		{Seq: 5, Op: opList},
		{Seq: 6, Op: opShutdown, Kill: true},
	} {
		data, _ := json.Marshal(r)
		f.Add(data)
	}
	f.Add([]byte(`{"seq":7,"op":"start","task":{"ID":"../x","Command":["sh"]},"cgroup":{"driver":"off"}}`))
	f.Add([]byte(`{"seq":0,"op":"list"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeRequest(data)
		if err != nil {
			return
		}
		if req.Seq == 0 {
			t.Fatal("accepted a request without a sequence number")
		}
		switch req.Op {
		case opStart:
			if req.Task == nil || req.Cgroup == nil || validateSpec(*req.Task) != nil || checkCgroupSpec(*req.Cgroup) != nil {
				t.Fatalf("accepted an unsafe start: %+v", req)
			}
		case opStop, opQuery:
			if validID(req.ID) != nil || req.Grace < 0 {
				t.Fatalf("accepted a bad %s: %+v", req.Op, req)
			}
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	ev := reply{Event: &taskEndEvent{ID: "a", Result: statusJSON{ExitCode: 3, FinishedAt: time.Unix(2, 0).UTC()}}}
	for _, r := range []reply{ev, {Seq: 1, Pid: 42, Version: 1}, {Seq: 2, Running: []runningTask{{ID: "a", StartedAt: time.Unix(1, 0).UTC()}}, Starting: []string{"b"}}, {Seq: 3, Code: codeSetup, Err: "cgroup: x"}} {
		data, _ := json.Marshal(r)
		f.Add(data)
	}
	f.Add([]byte(`{"event":{"id":"/etc","result":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := decodeReply(data)
		if err != nil {
			return
		}
		if rep.Seq == 0 && (rep.Event == nil || validID(rep.Event.ID) != nil || rep.Event.Result.FinishedAt.IsZero()) {
			t.Fatalf("accepted a bad event: %+v", rep)
		}
		for _, r := range rep.Running {
			if validID(r.ID) != nil {
				t.Fatalf("accepted a bad task ID %q", r.ID)
			}
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	good, _ := appendFrame(nil, request{Seq: 1, Op: opList})
	f.Add(good)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 5, '{'})
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := readFrame(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		if len(body) > maxFrame || len(body)+4 > len(data) {
			t.Fatalf("frame of %d bytes from %d bytes of input", len(body), len(data))
		}
	})
}

func FuzzDecodeJournal(f *testing.F) {
	run, _ := json.Marshal(journalRecord{Op: journalRun, ID: "a", Pid: 10, PidStart: 99, StartedAt: time.Unix(1, 0).UTC(), Walltime: time.Minute, Cgroup: &cgroupSpec{Driver: cgroupOff}})
	end, _ := json.Marshal(journalRecord{Op: journalEnd, ID: "a"})
	f.Add(append(append(append(run, '\n'), end...), '\n'))
	f.Add(append(run, []byte("\n{\"op\":\"run\",\"id\":\"b\",\"pi")...))
	f.Add([]byte(`{"op":"run","id":"c","pid":-1,"cgroup":{"driver":"v2","dir":"rel"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		live, _ := decodeJournal(data)
		seen := map[string]bool{}
		for _, r := range live {
			if r.Op != journalRun || validID(r.ID) != nil || r.Pid <= 0 || r.Cgroup == nil || checkCgroupSpec(*r.Cgroup) != nil {
				t.Fatalf("unsafe live record %+v", r)
			}
			if seen[r.ID] {
				t.Fatalf("task %s listed twice", r.ID)
			}
			seen[r.ID] = true
		}
	})
}

func FuzzParseStatStartTime(f *testing.F) {
	f.Add([]byte("1234 (sh) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 2621440 100 18446744073709551615"))
	f.Add([]byte("1 (a) b) c) S"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseStatStartTime(data)
	})
}
