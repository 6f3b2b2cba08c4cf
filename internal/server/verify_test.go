package server

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/state"
	"github.com/durehq/dure/internal/testkit"
)

// testFSM is an FSM on a fresh store and a function that applies a
// command to it at the next index, failing the test unless it takes effect.
func testFSM(t *testing.T) (*fsm.FSM, func(fsm.Command)) {
	f := fsm.New(state.New())
	var index uint64
	return f, func(c fsm.Command) {
		t.Helper()
		b, err := fsm.Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		index++
		if res := f.Apply(index, 1, b); res.Err != nil || res.Skipped > 0 {
			t.Fatalf("apply %T: %+v", c, res)
		}
	}
}

// busyState has node n1 running jobs 1 and 2 (two tasks each), job 3
// running and already being preempted for job 4, and jobs 4 and 5 pending.
func busyState(t *testing.T) *state.Snapshot {
	t.Helper()
	f, apply := testFSM(t)
	now := testkit.Epoch
	apply(&fsm.UpsertQueue{Queue: model.Queue{Name: model.DefaultQueue}})
	n := testkit.Node("n1").CPU(64).Mem("64G").Build()
	apply(&fsm.RegisterNode{Time: now, Node: *n})
	for id := model.JobID(1); id <= 5; id++ {
		j := testkit.Job(id).Tasks(2).Build()
		j.SubmitTime = now
		apply(&fsm.SubmitJob{Job: *j})
		if id > 3 {
			continue
		}
		pj := fsm.PlannedJob{JobID: id}
		for task := range 2 {
			pj.Allocs = append(pj.Allocs, model.Allocation{JobID: id, TaskIndex: task, Node: "n1", Resources: j.Groups[0].Resources, Command: []string{"true"}})
		}
		apply(&fsm.CommitPlan{Time: now, Term: 1, Jobs: []fsm.PlannedJob{pj}})
	}
	apply(&fsm.CommitPlan{Time: now, Term: 1, Preemptions: []fsm.PlannedPreemption{{JobID: 3, AllocIDs: []string{"3.0.1", "3.1.1"}, Preemptor: 4, Grace: time.Second}}})
	return f.Store().Snapshot()
}

func TestVerifyPlanKeepsOnlyPreemptionsThatStillHold(t *testing.T) {
	snap := busyState(t)
	why := model.Reason{Code: model.ReasonPreempted, Message: "preempted by job 4 of higher priority (5 > 0) in queue default"}
	plan := &sched.Plan{Preemptions: []sched.Preemption{
		{JobID: 1, AllocIDs: []string{"1.1.1", "1.0.1"}, Preemptor: 4, Reason: why}, // holds
		{JobID: 1, AllocIDs: []string{"1.0.1", "1.1.1"}, Preemptor: 5, Reason: why}, // the same victim again
		{JobID: 2, AllocIDs: []string{"2.0.1"}, Preemptor: 4, Reason: why},          // not all of its allocations
		{JobID: 3, AllocIDs: []string{"3.0.1", "3.1.1"}, Preemptor: 5, Reason: why}, // already being stopped
		{JobID: 5, AllocIDs: []string{"5.0.1"}, Preemptor: 4, Reason: why},          // not running
		{JobID: 2, AllocIDs: []string{"2.0.1", "2.1.1"}, Preemptor: 1, Reason: why}, // preemptor not waiting
		{JobID: 2, AllocIDs: []string{"2.0.1", "2.1.1", "2.1.1"}, Preemptor: 4},     // a repeat
	}}
	cmd := verifyPlan(snap, plan, 7, testkit.Epoch, 30*time.Second)
	want := []fsm.PlannedPreemption{{JobID: 1, AllocIDs: []string{"1.0.1", "1.1.1"}, Preemptor: 4, Reason: why, Grace: 30 * time.Second}}
	if diff := cmp.Diff(want, cmd.Preemptions); diff != "" {
		t.Errorf("committed preemptions (-want +got):\n%s", diff)
	}
}

func TestWaitingForVictimsNamesThem(t *testing.T) {
	snap := busyState(t)
	reasons := map[model.JobID]model.Reason{
		4: {Code: model.ReasonReserved, Message: "reserved: estimated start 12:00:01 (in 1s) on 1 node"},
		5: {Code: model.ReasonReserved, Message: "reserved"},
	}
	waitingForVictims(snap, reasons)
	want := map[model.JobID]model.Reason{
		4: {Code: model.ReasonPreempting, Message: "waiting for preempted job 3 to stop; reserved: estimated start 12:00:01 (in 1s) on 1 node"},
		5: {Code: model.ReasonReserved, Message: "reserved"},
	}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	// A reason that is not about room is left alone.
	reasons = map[model.JobID]model.Reason{4: {Code: model.ReasonQuota, Message: "queue default is at its quota"}}
	waitingForVictims(snap, reasons)
	if reasons[4].Code != model.ReasonQuota {
		t.Errorf("quota reason became %+v", reasons[4])
	}
}
