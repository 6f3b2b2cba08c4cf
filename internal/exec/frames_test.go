package exec

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// checkFramesMatch checks that the written-out messages are byte for byte
// what encoding/json makes of the same values.
func checkFramesMatch(t *testing.T, seq uint64, at time.Time, id string, r Result) {
	t.Helper()
	if got, want := startReplyFrame(seq, at), replyFrame(reply{Seq: seq, StartedAt: at}); !bytes.Equal(got, want) {
		t.Errorf("start reply (seq %d, %v):\n got %q\nwant %q", seq, at, got, want)
	}
	if validID(id) != nil {
		if _, err := endEventFrame(id, []byte("{}")); err == nil {
			t.Errorf("end event for the invalid ID %q: no error", id)
		}
		return
	}
	want, _ := json.Marshal(journalRecord{Op: journalEnd, ID: id})
	if got := journalEndLine(id); !bytes.Equal(got, append(want, '\n')) {
		t.Errorf("journal end line:\n got %q\nwant %q", got, want)
	}
	wantFile, ferr := encodeStatus(r)
	file, compact, err := encodeStatusOnce(r)
	if (err != nil) != (ferr != nil) {
		t.Fatalf("encodeStatusOnce: %v; encodeStatus: %v", err, ferr)
	}
	if err != nil {
		return
	}
	if !bytes.Equal(file, wantFile) {
		t.Errorf("status file:\n got %q\nwant %q", file, wantFile)
	}
	got, err := endEventFrame(id, compact)
	if err != nil {
		t.Fatal(err)
	}
	wantFrame, err := appendFrame(nil, reply{Event: &taskEndEvent{ID: id, Result: statusJSON(r)}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wantFrame) {
		t.Errorf("end event:\n got %q\nwant %q", got, wantFrame)
	}
}

func TestFramesMatchEncodingJSON(t *testing.T) {
	now := time.Now()
	for _, at := range []time.Time{
		{}, now, now.UTC(), now.Round(time.Second), now.In(time.FixedZone("x", -(9*3600 + 30*60))),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // encoding/json refuses it: the error frame
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 25*3600)),
	} {
		for _, seq := range []uint64{1, 42, 1<<64 - 1} {
			checkFramesMatch(t, seq, at, "t-1.x_Y", Result{ExitCode: 137, Signal: "SIGKILL", OOMKilled: true,
				StartErr: "exec \"<x>\" & \x00 \u2028 \xff", StartedAt: at, FinishedAt: now})
		}
	}
	checkFramesMatch(t, 1, now, "no/slash", Result{})
}

func FuzzFramesMatchEncodingJSON(f *testing.F) {
	f.Add(uint64(1), int64(1700000000123456789), 0, "t1", 0, "", "", true)
	f.Add(uint64(7), int64(-62135596800000000), -3600, "a.b-c_D", 143, "SIGTERM", "lost\n\"quoted\"", false)
	f.Add(uint64(1<<63), int64(0), 86400, "x", -1, "\xff\x00<>&", "\u2028", true)
	f.Fuzz(func(t *testing.T, seq uint64, unixNano int64, offset int, id string, code int, signal, text string, timedOut bool) {
		at := time.Unix(0, unixNano).In(time.FixedZone("z", offset%(48*3600)))
		checkFramesMatch(t, seq, at, id, Result{ExitCode: code, Signal: signal, TimedOut: timedOut, Lost: text,
			StartedAt: at, FinishedAt: at.Add(time.Second)})
	})
}

// BenchmarkTaskMessages encodes what the daemon sends and records for one
// task besides its journal run record: the start reply, the status file,
// the journal end line and the end event, through encoding/json as before
// and written out as now.
func BenchmarkTaskMessages(b *testing.B) {
	start := time.Now()
	r := Result{ExitCode: 0, StartedAt: start, FinishedAt: start.Add(time.Millisecond)}
	const id = "job-1234.5"
	b.Run("encoding-json", func(b *testing.B) {
		for range b.N {
			_ = replyFrame(reply{Seq: 99, StartedAt: start})
			_, _ = encodeStatus(r)
			_, _ = json.Marshal(journalRecord{Op: journalEnd, ID: id})
			_, _ = appendFrame(nil, reply{Event: &taskEndEvent{ID: id, Result: statusJSON(r)}})
		}
	})
	b.Run("written-out", func(b *testing.B) {
		for range b.N {
			_ = startReplyFrame(99, start)
			_, compact, _ := encodeStatusOnce(r)
			_ = journalEndLine(id)
			_, _ = endEventFrame(id, compact)
		}
	})
}
