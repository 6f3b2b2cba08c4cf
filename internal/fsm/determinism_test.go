package fsm_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
	"github.com/durehq/dure/internal/testkit"
)

// realisticLog drives one FSM through the stories users live through and
// returns it with its log: nodes join, fail, drain and come back; jobs
// succeed, fail, run out of memory, are retried, cancelled, deduplicated and
// pruned; an array is cancelled whole, a dependent of a failed job is
// cancelled; one entry is garbage.
func realisticLog(t *testing.T) *harness {
	h := newHarness(t)
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		h.node(n)
	}
	h.must(&fsm.UpsertQueue{Queue: model.Queue{Name: "gpu", Description: "GPU work"}})

	ok := h.submit(testkit.Job(0).Build()) // 1: succeeds
	keyed := testkit.Job(0).Queue("gpu").Owner("ada").Tasks(4).GPUs(1).Build()
	keyed.IdempotencyKey = "sweep-7"
	train := h.submit(keyed) // 2: 4 tasks, succeeds
	dup := keyed.Copy()
	dup.ID = train + 1
	if res := h.must(&fsm.SubmitJob{Job: *dup}); res.JobID != train {
		t.Fatalf("duplicate key returned job %d; want %d", res.JobID, train)
	}
	bad := h.submit(testkit.Job(0).Tasks(2).Build())                   // 3: exits 3
	oom := h.submit(testkit.Job(0).Mem("1G").Build())                  // 4: OOM
	retried := h.submit(testkit.Job(0).Tasks(2).MaxRetries(1).Build()) // 5: n3 dies, retried
	waiting := h.submit(testkit.Job(0).Build())                        // 6: cancelled while pending
	stopped := h.submit(testkit.Job(0).Build())                        // 7: cancelled while running
	blocked := h.submit(testkit.Job(0).GPUs(64).Build())               // 8: never fits

	h.must(&fsm.CommitPlan{Time: h.now, Term: h.term,
		Jobs: []fsm.PlannedJob{h.plannedJob(ok, "n1"), h.plannedJob(train, "n1", "n2"), h.plannedJob(bad, "n2")},
		Reasons: []fsm.JobReason{
			{JobID: blocked, Reason: model.Reason{Code: model.ReasonNoFit, Message: "needs 64 GPUs; nodes have 8"}},
			{JobID: oom, Reason: model.Reason{Code: model.ReasonPriority, Message: "behind 3 jobs"}},
		}})
	h.place(oom, "n2")
	h.place(retried, "n3", "n4")
	h.place(stopped, "n4")
	for _, id := range []model.JobID{ok, train, bad, oom, retried, stopped} {
		h.started(id)
	}
	h.update(exited(h.alloc("1.0.1"), 0), exited(h.alloc("2.0.1"), 0), exited(h.alloc("2.1.1"), 0))
	h.update(exited(h.alloc("3.1.1"), 3), exited(h.alloc("2.2.1"), 0))
	o := exited(h.alloc("4.0.1"), 137)
	o.OOMKilled, o.Signal = true, "SIGKILL"
	h.update(o, exited(h.alloc("2.3.1"), 0), exited(h.alloc("3.0.1"), 143))

	h.term = 2 // a leader change
	h.nodeDown("n3", "no heartbeat for 10s")
	h.must(&fsm.CancelJob{Time: h.now, ID: waiting, Reason: "by user request"})
	h.must(&fsm.CancelJob{Time: h.now, ID: stopped})
	h.must(&fsm.DrainNode{Time: h.now, Name: "n2", Drain: true, Reason: "disk"})
	stale := h.plannedJob(retried, "n2", "n4") // made before the drain committed
	h.must(&fsm.CommitPlan{Time: h.now, Term: h.term, Jobs: []fsm.PlannedJob{stale}})
	h.applyBytes(append([]byte{1, byte(fsm.TypeCancelJob)}, "not JSON"...))
	h.update(exited(h.alloc("5.1.1"), 143), exited(h.alloc("7.0.1"), 143))
	h.place(retried, "n1", "n4")
	h.started(retried)
	h.update(exited(h.alloc("5.0.2"), 0), exited(h.alloc("5.1.2"), 0))
	victim := h.submit(testkit.Job(0).MaxRetries(1).Build())  // 9: preempted, requeued
	preemptor := h.submit(testkit.Job(0).Priority(5).Build()) // 10: runs in its place
	h.place(victim, "n1")
	h.started(victim)
	p := h.plannedPreemption(victim, preemptor, 30*time.Second)
	h.must(&fsm.CommitPlan{Time: h.now, Term: h.term, Preemptions: []fsm.PlannedPreemption{p}})
	h.must(&fsm.CommitPlan{Time: h.now, Term: h.term, Preemptions: []fsm.PlannedPreemption{p}}) // a repeat: skipped
	h.update(stoppedBy(h.alloc(model.AllocID(victim, 0, 1)), 143, "SIGTERM"))
	h.place(preemptor, "n1")
	h.started(preemptor)
	h.node("n3")
	h.must(&fsm.PruneJobs{IDs: []model.JobID{ok, bad, waiting, blocked}})
	// An array, one element started, then cancelled whole; a job whose
	// dependency failed, cancelled when a plan reports it.
	arr, _ := h.submitArray(testkit.Job(0).Build(), model.Array{Ranges: ranges([3]int{0, 4, 2}), Throttle: 1})
	h.place(arr, "n1")
	h.started(arr)
	h.must(&fsm.CancelArray{Time: h.now, ArrayID: arr, Reason: "by user request"})
	never := h.submit(testkit.Job(0).After(model.AfterOK, oom).Build())
	h.neverPlan(never)

	got := map[model.JobID]model.JobState{}
	h.snap().Jobs(func(j *model.Job) bool { got[j.ID] = j.State; return true })
	want := map[model.JobID]model.JobState{
		train: model.JobSucceeded, oom: model.JobFailed, retried: model.JobSucceeded,
		stopped: model.JobCancelled, blocked: model.JobPending, victim: model.JobPending, preemptor: model.JobRunning,
		arr: model.JobCancelled, arr + 1: model.JobCancelled, arr + 2: model.JobCancelled, never: model.JobCancelled,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("the story did not play out (-want +got):\n%s", diff)
	}
	return h
}

func replay(t *testing.T, log []entry) *fsm.FSM {
	t.Helper()
	f := fsm.New(state.New())
	for _, e := range log {
		f.Apply(e.index, e.term, e.data)
	}
	return f
}

func hash(f *fsm.FSM) string { return f.Store().Snapshot().Hash() }

func TestSameLogSameState(t *testing.T) {
	h := realisticLog(t)
	want := hash(h.f)
	for i := range 2 {
		if got := hash(replay(t, h.log)); got != want {
			t.Fatalf("replay %d of the same %d entries reached a different state", i, len(h.log))
		}
	}

	// A replica that installs a snapshot at any point and applies the rest
	// reaches the same state as one that applied every entry.
	for cut := 1; cut < len(h.log); cut++ {
		first := replay(t, h.log[:cut])
		var buf bytes.Buffer
		if err := first.Store().Snapshot().Persist(&buf); err != nil {
			t.Fatalf("Persist at entry %d: %v", cut, err)
		}
		f := fsm.New(state.New())
		if err := f.Restore(&buf); err != nil {
			t.Fatalf("Restore at entry %d: %v", cut, err)
		}
		for _, e := range h.log[cut:] {
			f.Apply(e.index, e.term, e.data)
		}
		if got := hash(f); got != want {
			t.Fatalf("snapshot after entry %d, then the rest of the log: different state", cut)
		}
	}
}
