package exec

import (
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
