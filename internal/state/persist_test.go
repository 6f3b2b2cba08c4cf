package state_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
	"github.com/durehq/dure/internal/testkit"
)

// populated returns a store holding one of everything, in a variety of
// states, written over several indexes.
func populated(t testing.TB) *state.Store {
	t.Helper()
	s := state.New()
	write(t, s, 3, func(tx *state.WriteTxn) {
		tx.PutQueue(testkit.Queue("default"))
		tx.PutQueue(&model.Queue{Name: "gpu", Description: "GPU work"})
		tx.PutNode(testkit.Node("n1").CPU(8).Mem("32G").GPUs(2).Label("pool", "gpu").Build())
		tx.PutNode(testkit.Node("n2").CPU(4).Mem("8G").Custom("license", 3).Drain("maintenance").Build())
		tx.PutNode(testkit.Node("n3").CPU(4).Mem("8G").Down().Build())
	})
	write(t, s, 9, func(tx *state.WriteTxn) {
		j := testkit.Job(1).Tasks(2).GPUs(1).Env("A", "b").Constraint("pool", "gpu").Walltime(time.Hour).
			MaxRetries(2).State(model.JobRunning).Attempt(1).Build()
		j.Owner, j.IdempotencyKey = "ada", "nightly-1"
		tx.PutJob(j)
		tx.PutAlloc(testkit.Alloc(1, 0, "n1").GPUIndices(0).Fence(2, 9).Build())
		tx.PutAlloc(testkit.Alloc(1, 1, "n1").GPUIndices(1).Fence(2, 9).Build())
		tx.PutJob(testkit.Job(2).Group("a").Tasks(3).Group("b").Custom("license", 1).Build())
		failed := testkit.Job(40).State(model.JobFailed).Attempt(1).Build()
		failed.Reason = model.Reason{Code: model.ReasonOOM, Message: "task 0 killed"}
		failed.EndTime = testkit.Epoch.Add(time.Minute)
		failed.ExitCode = 137
		tx.PutJob(failed)
		a := testkit.Alloc(40, 0, "n3").Status(model.AllocExited).Desired(model.DesiredStop).Build()
		a.OOMKilled, a.ExitCode, a.FinishedAt = true, 137, failed.EndTime
		tx.PutAlloc(a)
	})
	return s
}

// view is everything a reader can see, for comparing two stores.
type view struct {
	Index     uint64
	LastJobID model.JobID
	Jobs      []*model.Job
	Allocs    map[model.JobID][]*model.Allocation
	Live      []*model.Allocation
	Nodes     []*model.Node
	Queues    []*model.Queue
	Idem      *model.Job
}

func viewOf(s *state.Store) view {
	snap := s.Snapshot()
	v := view{Index: snap.Index, LastJobID: snap.LastJobID(), Allocs: map[model.JobID][]*model.Allocation{},
		Live: snap.LiveAllocs(), Nodes: snap.Nodes(), Queues: snap.Queues(), Idem: snap.JobByIdempotencyKey("ada", "nightly-1")}
	snap.Jobs(func(j *model.Job) bool {
		v.Jobs = append(v.Jobs, j)
		v.Allocs[j.ID] = snap.AllocsByJob(j.ID)
		return true
	})
	return v
}

func persist(t testing.TB, s *state.Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Snapshot().Persist(&buf); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	return buf.Bytes()
}

func TestPersistRestoreRoundTrip(t *testing.T) {
	orig := populated(t)
	data := persist(t, orig)

	restored := state.New()
	restoredCh := restored.Restored()
	changed := restored.Changed()
	if err := restored.Restore(bytes.NewReader(data)); err != nil {
		t.Fatalf("Restore of a fresh snapshot: %v", err)
	}
	if got, want := restored.Snapshot().Hash(), orig.Snapshot().Hash(); got != want {
		t.Errorf("Hash after restore = %s; want %s", got, want)
	}
	if diff := cmp.Diff(viewOf(orig), viewOf(restored)); diff != "" {
		t.Errorf("reads differ after restore (-orig +restored):\n%s", diff)
	}
	if !closed(restoredCh) || !closed(changed) {
		t.Error("Restore did not close Restored() and Changed(): blocking readers would sleep through it")
	}
	if again := persist(t, restored); !bytes.Equal(again, data) {
		t.Errorf("re-persisting a restored store gives different bytes:\n%s\nvs\n%s", again, data)
	}

	// Writes after a restore build on it.
	write(t, restored, 10, func(tx *state.WriteTxn) { tx.PutJob(testkit.Job(41).Build()) })
	if restored.Snapshot().Job(1) == nil || restored.Snapshot().LastJobID() != 41 {
		t.Error("a write after restore lost the restored state or the ID counter")
	}
}

func TestRestoreReplacesExistingState(t *testing.T) {
	empty := persist(t, state.New())
	s := populated(t)
	if err := s.Restore(bytes.NewReader(empty)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	snap := s.Snapshot()
	if snap.Job(1) != nil || len(snap.Nodes()) != 0 || snap.Index != 0 || snap.LastJobID() != 0 {
		t.Error("restoring an empty snapshot kept old state")
	}
}

func TestHashTracksContent(t *testing.T) {
	a, b := populated(t), populated(t)
	if a.Snapshot().Hash() != b.Snapshot().Hash() {
		t.Fatal("two stores built by the same writes hash differently")
	}
	write(t, b, 10, func(tx *state.WriteTxn) {
		n := tx.Node("n2").Copy()
		n.Drain = false
		tx.PutNode(n)
	})
	write(t, a, 10, func(*state.WriteTxn) {})
	if a.Snapshot().Hash() == b.Snapshot().Hash() {
		t.Error("hash did not change when a node's drain flag did")
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	good := string(persist(t, populated(t)))
	lines := strings.SplitAfter(strings.TrimSuffix(good, "\n"), "\n")
	header := lines[0]
	withoutEnd := strings.Join(lines[:len(lines)-1], "")
	tests := []struct {
		name string
		data string
		want string // substring of the error
	}{
		{"empty input", "", "reading header: EOF"},
		{"garbage", "\x00\x01garbage", "reading header"},
		{"not an object", "[1,2,3]\n", "reading header"},
		{"wrong format", `{"format":"nomad-state","version":2,"index":1}` + "\n", `format "nomad-state" is not "dure-state"`},
		{"old version", `{"format":"dure-state","version":1,"index":1}` + "\n", "version 1 is not supported (want 3)"},
		{"future version", `{"format":"dure-state","version":99,"index":1}` + "\n", "version 99 is not supported"},
		{"truncated mid-record", good[:len(header)+40], "record 1: unexpected end of JSON input"},
		{"truncated at a line boundary", withoutEnd, "truncated after 12 records (no end record)"},
		{"header only", header, "truncated after 0 records"},
		{"end record counts wrong", header + lines[1] + `{"end":{"records":5}}` + "\n", "end record counts 5 records, but 1 came before it"},
		{"data after the end", good + lines[1], "data after the end record"},
		{"empty record", header + "{}\n", "record 1 is empty"},
		{"two objects in a record", header + `{"queue":{"name":"a"},"node":{"name":"b"}}` + "\n", "record 1 holds more than one object"},
		{"job without a state", header + `{"job":{"id":5}}` + "\n", "record 1: job 5 has no state"},
		{"node without a name", header + `{"node":{"address":"x"}}` + "\n", "record 1: node has no name"},
		{"allocation without a node", header + `{"alloc":{"id":"5.0.1","job_id":5}}` + "\n", "record 1: allocation 5.0.1 has no node"},
		{"unknown meta key", header + `{"meta":{"Key":"next_id","Value":3}}` + "\n", `record 1: unknown meta key "next_id"`},
		{"wrong type", header + `{"job":{"id":"five"}}` + "\n", "record 1: json: cannot unmarshal string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := populated(t)
			before := s.Snapshot().Hash()
			restoredCh, changed := s.Restored(), s.Changed()
			err := s.Restore(strings.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore error = %v; want one containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "state snapshot: ") {
				t.Errorf("error %q does not say it is about the state snapshot", err)
			}
			if after := s.Snapshot().Hash(); after != before {
				t.Error("a failed Restore changed the store")
			}
			if s.Index() != 9 {
				t.Errorf("a failed Restore moved the index to %d", s.Index())
			}
			if closed(restoredCh) || closed(changed) {
				t.Error("a failed Restore woke watchers")
			}
		})
	}
}

// FuzzRestore feeds arbitrary bytes to Restore: it must never panic, and a
// snapshot it accepts must persist to bytes that restore to the same state.
func FuzzRestore(f *testing.F) {
	good := persist(f, populated(f))
	f.Add(good)
	f.Add(persist(f, state.New()))
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"format":"dure-state","version":2,"index":3}` + "\n" + `{"queue":{"name":"q"}}` + "\n" + `{"end":{"records":1}}` + "\n"))
	f.Add([]byte(`{"format":"dure-state","version":2,"index":3}` + "\n" + `{"job":{"id":1,"state":"pending","owner":"a","idempotency_key":"k"}}` + "\n" + `{"job":{"id":1,"state":"failed"}}` + "\n" + `{"end":{"records":2}}` + "\n"))
	f.Add([]byte(`{"format":"dure-state","version":2}{"alloc":{"id":"x","node":"n","status":"running"}}{"end":{"records":1}}`))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := state.New()
		if err := s.Restore(bytes.NewReader(data)); err != nil {
			if s.Snapshot().Hash() != state.New().Snapshot().Hash() {
				t.Fatalf("failed Restore (%v) changed the store", err)
			}
			return
		}
		first := persist(t, s)
		again := state.New()
		if err := again.Restore(bytes.NewReader(first)); err != nil {
			t.Fatalf("the store's own snapshot does not restore: %v\n%s", err, first)
		}
		if second := persist(t, again); !bytes.Equal(first, second) {
			t.Fatalf("restore → persist is not stable:\n%s\nvs\n%s", first, second)
		}
		if s.Snapshot().Hash() != again.Snapshot().Hash() {
			t.Fatal("hash differs after a persist/restore round trip")
		}
	})
}

func TestRestoreRejectsAlteredByte(t *testing.T) {
	src := state.New()
	if err := src.Write(1, func(tx *state.WriteTxn) error {
		tx.PutQueue(&model.Queue{Name: "precious"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := src.Snapshot().Persist(&buf); err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(buf.Bytes(), []byte("precious"), []byte("precioes"), 1)
	dst := state.New()
	err := dst.Restore(bytes.NewReader(altered))
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("Restore of a snapshot with one byte changed = %v, want a checksum mismatch", err)
	}
	if dst.Snapshot().Queue("precioes") != nil {
		t.Error("the altered queue was restored")
	}
	if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("the untouched snapshot: %v", err)
	}
}
