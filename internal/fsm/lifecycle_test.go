package fsm_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

func TestJobSucceedsWhenEveryTaskExitsZero(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	h.node("n2")
	h.term = 7
	id := h.submit(testkit.Job(0).Tasks(2).Build())
	if j := h.job(id); j.State != model.JobPending || j.Reason.Code != model.ReasonNewJob {
		t.Fatalf("new job: state %s reason %q; want pending, %s", j.State, j.Reason.Code, model.ReasonNewJob)
	}

	placedAt := h.now
	if res := h.place(id, "n1", "n2"); res.Placed != 1 || res.Skipped != 0 {
		t.Fatalf("CommitPlan result %+v; want 1 placed", res)
	}
	j := h.job(id)
	if j.State != model.JobRunning || j.Attempt != 1 || j.Reason != (model.Reason{}) || !j.StartTime.Equal(placedAt) {
		t.Errorf("placed job: state %s attempt %d reason %+v start %v; want running, 1, none, %v", j.State, j.Attempt, j.Reason, j.StartTime, placedAt)
	}
	type allocView struct {
		ID, Node         string
		Attempt          int
		Status           model.AllocStatus
		Desired          model.DesiredStatus
		CreateTerm       uint64
		CreateIndexIsLog bool
	}
	var got []allocView
	for _, a := range h.snap().AllocsByJob(id) {
		got = append(got, allocView{a.ID, a.Node, a.Attempt, a.Status, a.Desired, a.CreateTerm, a.CreateIndex == h.index})
	}
	want := []allocView{
		{"1.0.1", "n1", 1, model.AllocAssigned, model.DesiredRun, 7, true},
		{"1.1.1", "n2", 1, model.AllocAssigned, model.DesiredRun, 7, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allocations after placement (-want +got):\n%s", diff)
	}

	startAt := h.now
	h.started(id)
	if a := h.alloc("1.0.1"); a.Status != model.AllocRunning || !a.StartedAt.Equal(startAt) {
		t.Errorf("alloc 1.0.1 after start report: %s, started %v; want running since %v", a.Status, a.StartedAt, startAt)
	}
	h.update(exited(h.alloc("1.0.1"), 0))
	if j := h.job(id); j.State != model.JobRunning {
		t.Fatalf("job with one task still running is %s", j.State)
	}
	doneAt := h.now
	h.update(exited(h.alloc("1.1.1"), 0))
	j = h.job(id)
	if j.State != model.JobSucceeded || j.ExitCode != 0 || !j.EndTime.Equal(doneAt) {
		t.Errorf("finished job: state %s exit %d end %v; want succeeded, 0, %v", j.State, j.ExitCode, j.EndTime, doneAt)
	}
	if diff := cmp.Diff(model.Reason{Code: model.ReasonCompleted, Message: "all 2 task(s) exited 0"}, j.Reason); diff != "" {
		t.Errorf("reason (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"submitted", "placed", "succeeded"}, eventTypes(j)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if live := h.snap().LiveAllocs(); len(live) != 0 {
		t.Errorf("%d allocations still hold resources after the job ended", len(live))
	}
}

func TestTaskFailureFailsJob(t *testing.T) {
	tests := []struct {
		name     string
		update   func(a *model.Allocation) fsm.AllocUpdate
		exitCode int
		reason   model.Reason
	}{
		{
			name:     "non-zero exit",
			update:   func(a *model.Allocation) fsm.AllocUpdate { return exited(a, 3) },
			exitCode: 3,
			reason:   model.Reason{Code: model.ReasonTaskFailed, Message: "task 1 on n2 exited with code 3"},
		},
		{
			name: "out of memory",
			update: func(a *model.Allocation) fsm.AllocUpdate {
				u := exited(a, 137)
				u.Signal, u.OOMKilled = "SIGKILL", true
				return u
			},
			exitCode: 137,
			reason:   model.Reason{Code: model.ReasonOOM, Message: "task 1 on n2 was killed for exceeding its memory limit 2GiB"},
		},
		{
			name: "walltime exceeded",
			update: func(a *model.Allocation) fsm.AllocUpdate {
				u := exited(a, 143)
				u.Signal, u.TimedOut = "SIGTERM", true
				return u
			},
			exitCode: 143,
			reason:   model.Reason{Code: model.ReasonWalltime, Message: "task 1 on n2 exceeded the walltime 1m0s"},
		},
		{
			name: "killed by a signal",
			update: func(a *model.Allocation) fsm.AllocUpdate {
				u := exited(a, 0)
				u.Signal = "SIGKILL"
				return u
			},
			exitCode: 0,
			reason:   model.Reason{Code: model.ReasonTaskFailed, Message: "task 1 on n2 was killed by SIGKILL"},
		},
		{
			name: "its supervisor died",
			update: func(a *model.Allocation) fsm.AllocUpdate {
				u := exited(a, -1)
				u.Message = "lost: its supervisor ended without recording how the task ended"
				return u
			},
			exitCode: -1,
			reason:   model.Reason{Code: model.ReasonTaskFailed, Message: "task 1 on n2 ended without an exit status (lost: its supervisor ended without recording how the task ended)"},
		},
		{
			name: "could not start",
			update: func(a *model.Allocation) fsm.AllocUpdate {
				return fsm.AllocUpdate{AllocID: a.ID, Node: a.Node, Status: model.AllocFailed, ExitCode: -1, Message: `exec "trian.py": no such file`}
			},
			exitCode: -1,
			reason:   model.Reason{Code: model.ReasonStartFailed, Message: `task 1 could not start on n2: exec "trian.py": no such file`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.node("n1")
			h.node("n2")
			id := h.submit(testkit.Job(0).Tasks(3).Mem("2G").Walltime(60e9).Build())
			h.place(id, "n1", "n2", "n1")
			h.started(id)
			failedAt := h.now
			h.update(tc.update(h.alloc("1.1.1")))

			j := h.job(id)
			if j.State != model.JobFailed || j.ExitCode != tc.exitCode || !j.EndTime.Equal(failedAt) {
				t.Errorf("job: state %s exit %d end %v; want failed, %d, %v", j.State, j.ExitCode, j.EndTime, tc.exitCode, failedAt)
			}
			if diff := cmp.Diff(tc.reason, j.Reason); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			for _, sib := range []string{"1.0.1", "1.2.1"} {
				a := h.alloc(sib)
				if a.Desired != model.DesiredStop || a.DesiredReason != "task 1 of the job failed" || a.Status != model.AllocRunning {
					t.Errorf("sibling %s: desired %s (%q), status %s; want stop (task 1 of the job failed), still running until its agent stops it",
						sib, a.Desired, a.DesiredReason, a.Status)
				}
			}
			// The siblings' exits, when the agents stop them, change nothing.
			before := *h.job(id)
			h.update(exited(h.alloc("1.0.1"), 143), exited(h.alloc("1.2.1"), 0))
			after := h.job(id)
			if after.State != before.State || after.Reason != before.Reason || after.ExitCode != before.ExitCode || !after.EndTime.Equal(before.EndTime) {
				t.Errorf("stopped siblings changed the failed job: %+v → %+v", before.Reason, after.Reason)
			}
		})
	}
}

func TestLostWorkIsRetriedThenFails(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"n1", "n2", "n3"} {
		h.node(n)
	}
	id := h.submit(testkit.Job(0).Tasks(2).MaxRetries(1).Build())
	h.place(id, "n1", "n2")
	h.started(id)

	h.nodeDown("n1", "no heartbeat for 10s")
	j := h.job(id)
	wantReason := model.Reason{Code: model.ReasonRequeued,
		Message: "attempt 1 lost (node n1 went down: no heartbeat for 10s); requeued, retry 1 of 1 after 1s"}
	if j.State != model.JobPending || !j.EndTime.IsZero() {
		t.Errorf("after losing a node: state %s end %v; want pending, no end", j.State, j.EndTime)
	}
	if lostAt := h.alloc("1.0.1").FinishedAt; !j.EligibleAt.Equal(lostAt.Add(time.Second)) {
		t.Errorf("retry eligible at %v; want 1s (the first backoff) after the loss at %v", j.EligibleAt, lostAt)
	}
	if diff := cmp.Diff(wantReason, j.Reason); diff != "" {
		t.Errorf("requeue reason (-want +got):\n%s", diff)
	}
	if a := h.alloc("1.0.1"); a.Status != model.AllocLost || a.Message != "node n1 went down: no heartbeat for 10s" {
		t.Errorf("alloc on the lost node: %s %q; want lost with the node's reason", a.Status, a.Message)
	}
	if a := h.alloc("1.1.1"); a.Desired != model.DesiredStop || a.Status != model.AllocRunning {
		t.Errorf("surviving task of the lost attempt: desired %s status %s; want stop, running", a.Desired, a.Status)
	}
	if n := h.snap().Node("n1"); n.Status != model.NodeDown || n.StatusReason != "no heartbeat for 10s" {
		t.Errorf("node n1: %s %q", n.Status, n.StatusReason)
	}

	// Attempt 2 goes elsewhere, with new allocation IDs.
	h.place(id, "n2", "n3")
	j = h.job(id)
	if j.State != model.JobRunning || j.Attempt != 2 {
		t.Fatalf("after re-placement: %s attempt %d; want running, 2", j.State, j.Attempt)
	}
	var ids []string
	for _, a := range h.snap().AllocsByJob(id) {
		ids = append(ids, a.ID)
	}
	if diff := cmp.Diff([]string{"1.0.1", "1.0.2", "1.1.1", "1.1.2"}, ids); diff != "" {
		t.Errorf("allocation IDs (-want +got):\n%s", diff)
	}
	h.started(id)
	// The old attempt's task finally stops: it does not touch attempt 2.
	h.update(exited(h.alloc("1.1.1"), 143))
	if j := h.job(id); j.State != model.JobRunning {
		t.Fatalf("old attempt's exit moved the job to %s", j.State)
	}

	lostAt := h.now
	h.nodeDown("n3", "no heartbeat for 10s")
	j = h.job(id)
	want := model.Reason{Code: model.ReasonNodeLost,
		Message: "task 1 lost: node n3 went down: no heartbeat for 10s (no retries left of 1)"}
	if j.State != model.JobFailed || !j.EndTime.Equal(lostAt) {
		t.Errorf("second loss: state %s end %v; want failed at %v", j.State, j.EndTime, lostAt)
	}
	if diff := cmp.Diff(want, j.Reason); diff != "" {
		t.Errorf("reason (-want +got):\n%s", diff)
	}
	if a := h.alloc("1.0.2"); a.Desired != model.DesiredStop {
		t.Errorf("task 0 of the failed attempt: desired %s; want stop", a.Desired)
	}
	if diff := cmp.Diff([]string{"submitted", "placed", "requeued", "placed", "failed"}, eventTypes(j)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestLostWorkWithoutRetriesFails(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	id := h.submit(testkit.Job(0).Build())
	h.place(id, "n1")
	h.nodeDown("n1", "gone")
	want := model.Reason{Code: model.ReasonNodeLost, Message: "task 0 lost: node n1 went down: gone"}
	if j := h.job(id); j.State != model.JobFailed || j.Reason != want {
		t.Errorf("job: %s %+v; want failed %+v", j.State, j.Reason, want)
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	pending := h.submit(testkit.Job(0).Build())
	running := h.submit(testkit.Job(0).Tasks(2).Build())
	h.place(running, "n1")
	h.started(running)
	done := h.submit(testkit.Job(0).Build())
	h.place(done, "n1")
	h.update(exited(h.alloc("3.0.1"), 0))

	at := h.now
	if res := h.must(&fsm.CancelJob{Time: at, ID: pending, Reason: "by user request"}); res.JobID != pending {
		t.Errorf("cancel result names job %d; want %d", res.JobID, pending)
	}
	j := h.job(pending)
	if j.State != model.JobCancelled || !j.EndTime.Equal(at) || j.Reason != (model.Reason{Code: model.ReasonCancelled, Message: "cancelled: by user request"}) {
		t.Errorf("cancelled pending job: %s %+v end %v", j.State, j.Reason, j.EndTime)
	}

	h.must(&fsm.CancelJob{Time: h.now, ID: running})
	if j := h.job(running); j.State != model.JobCancelled || j.Reason.Message != "cancelled" {
		t.Errorf("cancelled running job: %s %q", j.State, j.Reason.Message)
	}
	for _, id := range []string{"2.0.1", "2.1.1"} {
		if a := h.alloc(id); a.Desired != model.DesiredStop || a.DesiredReason != "job cancelled" || a.Status != model.AllocRunning {
			t.Errorf("alloc %s of the cancelled job: desired %s (%q) status %s; want stop, still running", id, a.Desired, a.DesiredReason, a.Status)
		}
	}
	h.update(exited(h.alloc("2.0.1"), 143))
	if j := h.job(running); j.State != model.JobCancelled {
		t.Errorf("a stopped task's exit turned the cancelled job into %s", j.State)
	}

	errs := []struct {
		name string
		id   model.JobID
		want error
	}{
		{"finished job", done, fsm.ErrConflict},
		{"already cancelled", pending, fsm.ErrConflict},
		{"unknown job", 99, fsm.ErrNotFound},
	}
	for _, tc := range errs {
		before := h.snap().Job(tc.id)
		res := h.apply(&fsm.CancelJob{Time: h.now, ID: tc.id})
		if !errors.Is(res.Err, tc.want) {
			t.Errorf("%s: cancel error %v; want %v", tc.name, res.Err, tc.want)
		}
		if diff := cmp.Diff(before, h.snap().Job(tc.id)); diff != "" {
			t.Errorf("%s: a refused cancel changed the job:\n%s", tc.name, diff)
		}
	}
	if j := h.job(done); j.State != model.JobSucceeded {
		t.Errorf("finished job is %s after a refused cancel", j.State)
	}
}

func TestSubmit(t *testing.T) {
	h := newHarness(t)
	first := testkit.Job(0).Owner("ada").Build()
	first.IdempotencyKey = "nightly"
	id := h.submit(first)

	// The leader retried: a new ID, the same key.
	retry := testkit.Job(0).Owner("ada").Name("other").Build()
	retry.IdempotencyKey = "nightly"
	retry.ID, retry.SubmitTime = id+1, h.now
	before := h.snap()
	res := h.apply(&fsm.SubmitJob{Job: *retry})
	if res.Err != nil || res.JobID != id {
		t.Errorf("resubmission with the same key: %+v; want job %d and no error", res, id)
	}
	after := h.snap()
	if after.Job(id+1) != nil || after.LastJobID() != before.LastJobID() || len(after.JobsInState(model.JobPending)) != 1 {
		t.Error("a repeated idempotency key created a job or used up an ID")
	}

	// Same key, another owner: a job of its own.
	bob := testkit.Job(0).Owner("bob").Build()
	bob.IdempotencyKey = "nightly"
	if got := h.submit(bob); got == id {
		t.Error("bob's job was taken for ada's because the keys match")
	}

	// A job carrying run-time fields from outside starts clean.
	dirty := testkit.Job(0).State(model.JobFailed).Attempt(5).Build()
	dirty.EndTime, dirty.ExitCode = t0, 9
	got := h.job(h.submit(dirty))
	if got.State != model.JobPending || got.Attempt != 0 || !got.EndTime.IsZero() || got.ExitCode != 0 {
		t.Errorf("submitted job: state %s attempt %d end %v exit %d; want a fresh pending job", got.State, got.Attempt, got.EndTime, got.ExitCode)
	}
	if diff := cmp.Diff([]string{"submitted"}, eventTypes(got)); diff != "" {
		t.Errorf("events of a new job (-want +got):\n%s", diff)
	}

	refused := []struct {
		name string
		job  func() model.Job
		want error
	}{
		{"ID already used", func() model.Job { j := testkit.Job(id).Build(); return *j }, fsm.ErrConflict},
		{"ID below the last one", func() model.Job { j := testkit.Job(1).Build(); return *j }, fsm.ErrConflict},
		{"unknown queue", func() model.Job { j := testkit.Job(100).Queue("nosuch").Build(); return *j }, fsm.ErrNotFound},
	}
	for _, tc := range refused {
		res := h.apply(&fsm.SubmitJob{Job: tc.job()})
		if !errors.Is(res.Err, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, res.Err, tc.want)
		}
	}
	if h.snap().Job(100) != nil {
		t.Error("a job for an unknown queue was stored")
	}
}

func TestAllocUpdatesAreFenced(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(h *harness)
		update func(a *model.Allocation) fsm.AllocUpdate
	}{
		{"from another node", nil, func(a *model.Allocation) fsm.AllocUpdate {
			u := exited(a, 1)
			u.Node = "n2"
			return u
		}},
		{"for an unknown allocation", nil, func(a *model.Allocation) fsm.AllocUpdate {
			u := exited(a, 1)
			u.AllocID = "1.0.9"
			return u
		}},
		{"running again after exiting", func(h *harness) { h.update(exited(h.alloc("1.0.1"), 0)) }, func(a *model.Allocation) fsm.AllocUpdate {
			return fsm.AllocUpdate{AllocID: a.ID, Node: a.Node, Status: model.AllocRunning}
		}},
		{"a second completion", func(h *harness) { h.update(exited(h.alloc("1.0.1"), 0)) }, func(a *model.Allocation) fsm.AllocUpdate {
			return exited(a, 1)
		}},
		{"after the node was lost", func(h *harness) { h.nodeDown("n1", "gone") }, func(a *model.Allocation) fsm.AllocUpdate {
			return exited(a, 0)
		}},
		{"a status agents do not report", nil, func(a *model.Allocation) fsm.AllocUpdate {
			return fsm.AllocUpdate{AllocID: a.ID, Node: a.Node, Status: model.AllocLost}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.node("n1")
			h.node("n2")
			id := h.submit(testkit.Job(0).Tasks(2).Build())
			h.place(id, "n1")
			h.started(id)
			if tc.setup != nil {
				tc.setup(h)
			}
			a := h.alloc("1.0.1")
			j := h.job(id)
			h.update(tc.update(a))
			if diff := cmp.Diff(a, h.alloc("1.0.1")); diff != "" {
				t.Errorf("the allocation changed (-before +after):\n%s", diff)
			}
			got := h.job(id)
			if got.State != j.State || got.Reason != j.Reason || got.ExitCode != j.ExitCode {
				t.Errorf("the job changed: %s %+v → %s %+v", j.State, j.Reason, got.State, got.Reason)
			}
		})
	}
}

func TestCommitPlanSkipsStalePlacements(t *testing.T) {
	tests := []struct {
		name string
		// between runs after the plan was made and before it commits.
		between func(h *harness, id model.JobID)
		edit    func(pj *fsm.PlannedJob)
	}{
		{"job cancelled", func(h *harness, id model.JobID) { h.must(&fsm.CancelJob{Time: h.now, ID: id}) }, nil},
		{"node went down", func(h *harness, id model.JobID) { h.nodeDown("n2", "gone") }, nil},
		{"node drained", func(h *harness, id model.JobID) { h.must(&fsm.DrainNode{Time: h.now, Name: "n2", Drain: true}) }, nil},
		{"job placed by an earlier plan", func(h *harness, id model.JobID) { h.place(id, "n1") }, nil},
		{"unknown node", nil, func(pj *fsm.PlannedJob) { pj.Allocs[1].Node = "n9" }},
		{"a task missing", nil, func(pj *fsm.PlannedJob) { pj.Allocs = pj.Allocs[:1] }},
		{"a task twice", nil, func(pj *fsm.PlannedJob) { pj.Allocs[1].TaskIndex = 0 }},
		{"task index out of range", nil, func(pj *fsm.PlannedJob) { pj.Allocs[1].TaskIndex = 2 }},
		{"allocation of another job", nil, func(pj *fsm.PlannedJob) { pj.Allocs[1].JobID = 1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.node("n1")
			h.node("n2")
			other := h.submit(testkit.Job(0).Build())
			id := h.submit(testkit.Job(0).Tasks(2).Build())
			pj := h.plannedJob(id, "n1", "n2")
			good := h.plannedJob(other, "n1")
			if tc.edit != nil {
				tc.edit(&pj)
			}
			if tc.between != nil {
				tc.between(h, id)
			}
			before := h.job(id)
			allocsBefore := h.snap().AllocsByJob(id)
			res := h.must(&fsm.CommitPlan{Time: h.now, Term: 1, Jobs: []fsm.PlannedJob{pj, good}})
			if res.Placed != 1 || res.Skipped != 1 {
				t.Errorf("result %+v; want the stale job skipped and the other placed", res)
			}
			if diff := cmp.Diff(before, h.job(id)); diff != "" {
				t.Errorf("the skipped job changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(allocsBefore, h.snap().AllocsByJob(id)); diff != "" {
				t.Errorf("the skipped job's allocations changed (-before +after):\n%s", diff)
			}
			if j := h.job(other); j.State != model.JobRunning {
				t.Errorf("the valid job in the same plan is %s; want running", j.State)
			}
		})
	}
}

func TestCommitPlanReasonsOnlyChangePendingJobs(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	pending := h.submit(testkit.Job(0).Build())
	running := h.submit(testkit.Job(0).Build())
	h.place(running, "n1")
	cancelled := h.submit(testkit.Job(0).Build())
	h.must(&fsm.CancelJob{Time: h.now, ID: cancelled})

	busy := model.Reason{Code: model.ReasonResources, Message: "needs 8 GPUs; 0 free"}
	before := map[model.JobID]*model.Job{running: h.job(running), cancelled: h.job(cancelled)}
	h.must(&fsm.CommitPlan{Time: h.now, Reasons: []fsm.JobReason{
		{JobID: pending, Reason: busy}, {JobID: running, Reason: busy}, {JobID: cancelled, Reason: busy}, {JobID: 77, Reason: busy},
	}})
	if got := h.job(pending).Reason; got != busy {
		t.Errorf("pending job's reason = %+v; want %+v", got, busy)
	}
	for id, j := range before {
		if diff := cmp.Diff(j, h.job(id)); diff != "" {
			t.Errorf("job %d (%s) changed by a reason (-before +after):\n%s", id, j.State, diff)
		}
	}
	if h.snap().Job(77) != nil {
		t.Error("a reason for an unknown job created it")
	}

	// The same reason again is not a change: watchers are not woken.
	idx := h.job(pending).ModifyIndex
	h.must(&fsm.CommitPlan{Time: h.now, Reasons: []fsm.JobReason{{JobID: pending, Reason: busy}}})
	if got := h.job(pending).ModifyIndex; got != idx {
		t.Errorf("an unchanged reason moved the job's ModifyIndex from %d to %d", idx, got)
	}
}

func TestPruneJobsForgetsOnlyFinishedWork(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	succeeded := h.submit(testkit.Job(0).Build())
	h.place(succeeded, "n1")
	h.update(exited(h.alloc("1.0.1"), 0))
	failed := h.submit(testkit.Job(0).Build())
	h.place(failed, "n1")
	h.update(exited(h.alloc("2.0.1"), 1))
	stopping := h.submit(testkit.Job(0).Build()) // cancelled, task not stopped yet
	h.place(stopping, "n1")
	h.started(stopping)
	h.must(&fsm.CancelJob{Time: h.now, ID: stopping})
	running := h.submit(testkit.Job(0).Build())
	h.place(running, "n1")
	pending := h.submit(testkit.Job(0).Build())

	h.must(&fsm.PruneJobs{IDs: []model.JobID{succeeded, failed, stopping, running, pending, 99}})
	snap := h.snap()
	for _, id := range []model.JobID{succeeded, failed} {
		if snap.Job(id) != nil || len(snap.AllocsByJob(id)) != 0 {
			t.Errorf("finished job %d or its allocations survived the prune", id)
		}
	}
	for _, id := range []model.JobID{stopping, running, pending} {
		if snap.Job(id) == nil {
			t.Errorf("job %d (not finished, or still stopping) was pruned", id)
		}
	}
	if len(snap.AllocsByJob(stopping)) != 1 {
		t.Error("the live allocation of a stopping job was forgotten while its task still runs")
	}
	if snap.LastJobID() != pending {
		t.Errorf("LastJobID = %d after pruning; want %d", snap.LastJobID(), pending)
	}

	// Once its task stops, the cancelled job can go.
	h.update(exited(h.alloc("3.0.1"), 143))
	h.must(&fsm.PruneJobs{IDs: []model.JobID{stopping}})
	if h.snap().Job(stopping) != nil {
		t.Error("a cancelled job whose tasks all stopped was not pruned")
	}
}

func TestNodes(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	regAt := t0.Add(1 * 1e9) // the registration's own time
	n := h.snap().Node("n1")
	if n.Status != model.NodeReady || n.StatusReason != "registered" || !n.StatusChangedAt.Equal(regAt) {
		t.Errorf("registered node: %s %q changed %v", n.Status, n.StatusReason, n.StatusChangedAt)
	}

	h.must(&fsm.DrainNode{Time: h.now, Name: "n1", Drain: true, Reason: "disk swap"})
	h.node("n1") // the agent restarts
	n = h.snap().Node("n1")
	if !n.Drain || n.DrainReason != "disk swap" || !n.StatusChangedAt.Equal(regAt) {
		t.Errorf("re-registration: drain %v %q changed %v; want the operator's drain kept and no status change", n.Drain, n.DrainReason, n.StatusChangedAt)
	}
	h.must(&fsm.DrainNode{Time: h.now, Name: "n1", Drain: false, Reason: "ignored"})
	if n = h.snap().Node("n1"); n.Drain || n.DrainReason != "" {
		t.Errorf("undrained node: drain %v reason %q", n.Drain, n.DrainReason)
	}

	h.nodeDown("n1", "no heartbeat")
	backAt := h.now
	h.node("n1")
	if n = h.snap().Node("n1"); n.Status != model.NodeReady || !n.StatusChangedAt.Equal(backAt) {
		t.Errorf("node back after down: %s changed %v; want ready at %v", n.Status, n.StatusChangedAt, backAt)
	}

	for _, c := range []fsm.Command{
		&fsm.DrainNode{Time: h.now, Name: "n9", Drain: true},
		&fsm.NodeStatus{Time: h.now, Name: "n9", Status: model.NodeDown},
	} {
		if res := h.apply(c); !errors.Is(res.Err, fsm.ErrNotFound) {
			t.Errorf("%T for an unknown node: %v; want ErrNotFound", c, res.Err)
		}
	}
	if h.snap().Node("n9") != nil {
		t.Error("a command for an unknown node created it")
	}
}

func TestUpsertQueueKeepsCreateIndex(t *testing.T) {
	h := newHarness(t)
	h.must(&fsm.UpsertQueue{Queue: model.Queue{Name: "gpu", Description: "first"}})
	created := h.index
	h.must(&fsm.UpsertQueue{Queue: model.Queue{Name: "gpu", Description: "second", CreateIndex: 999}})
	q := h.snap().Queue("gpu")
	if q.Description != "second" || q.CreateIndex != created || q.ModifyIndex != h.index {
		t.Errorf("queue after update: %+v; want description second, created at %d, modified at %d", q, created, h.index)
	}
}

// An entry of a command type this binary does not know was written by a
// newer leader: skipping it would let this replica's state drift from its
// peers', so the FSM stops applying, and stays stopped, instead.
func TestEntryFromANewerVersionHaltsTheFSM(t *testing.T) {
	h := newHarness(t)
	var halted []error
	h.f.OnHalt(func(err error) { halted = append(halted, err) })
	before := h.snap()
	newer := h.index + 1
	res := h.f.Apply(newer, 1, []byte{1, 200, '{', '}'})
	if !errors.Is(res.Err, fsm.ErrNewerEntry) || !strings.Contains(res.Err.Error(), fmt.Sprintf("log entry %d", newer)) {
		t.Fatalf("Apply of command type 200: %v; want ErrNewerEntry naming entry %d", res.Err, newer)
	}
	if len(halted) != 1 || !errors.Is(halted[0], fsm.ErrNewerEntry) {
		t.Fatalf("OnHalt calls = %v; want one with ErrNewerEntry", halted)
	}
	// A well-formed entry after it is not applied either: it may depend on
	// the one that was not understood.
	job := testkit.Job(0).Build()
	b, err := fsm.Encode(&fsm.SubmitJob{Job: *job})
	if err != nil {
		t.Fatal(err)
	}
	res = h.f.Apply(newer+1, 1, b)
	if !errors.Is(res.Err, fsm.ErrNewerEntry) {
		t.Errorf("Apply after the halt: %v; want the halt's error again", res.Err)
	}
	if len(halted) != 1 {
		t.Errorf("OnHalt called %d times; want once", len(halted))
	}
	if err := h.f.Halted(); !errors.Is(err, fsm.ErrNewerEntry) {
		t.Errorf("Halted() = %v; want ErrNewerEntry", err)
	}
	after := h.snap()
	if after.Index != before.Index {
		t.Errorf("index after the halt = %d; want %d (nothing past the unknown entry is applied)", after.Index, before.Index)
	}
	if n := len(after.JobsInState(model.JobPending)); n != len(before.JobsInState(model.JobPending)) {
		t.Errorf("pending jobs after the halt = %d; want %d", n, len(before.JobsInState(model.JobPending)))
	}
}

func TestBadEntryIsSkippedButAdvancesTheIndex(t *testing.T) {
	h := newHarness(t)
	before := h.snap()
	changed := h.f.Store().Changed()
	res := h.f.Apply(h.index+1, 1, []byte{1, byte(fsm.TypeCancelJob), '{'})
	if !errors.Is(res.Err, fsm.ErrBadEntry) {
		t.Fatalf("Apply of a malformed entry: %v; want ErrBadEntry", res.Err)
	}
	after := h.snap()
	if after.Index != h.index+1 {
		t.Errorf("index after a bad entry = %d; want %d (every entry is applied, even a bad one)", after.Index, h.index+1)
	}
	if diff := cmp.Diff(before.Queues(), after.Queues()); diff != "" {
		t.Errorf("a bad entry changed state:\n%s", diff)
	}
	select {
	case <-changed:
	default:
		t.Error("a bad entry did not wake watchers of the index")
	}
}

// An agent's allocation watch hears of the changes it must act on (a new
// allocation, a stop request, an end the servers decided), not of what the
// agent itself reported: AgentIndex moves only for the former.
func TestAgentIndexMovesOnlyForWhatTheAgentMustHear(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	h.node("n2")
	changed := func(node string, after uint64) []string {
		allocs, _, _ := h.snap().AllocChangesOnNode(node, after)
		var ids []string
		for _, a := range allocs {
			ids = append(ids, a.ID+" "+string(a.Status)+" "+string(a.Desired))
		}
		return ids
	}
	id := h.submit(testkit.Job(0).Tasks(2).Build())
	h.place(id, "n1", "n2")
	placed := h.snap().Index
	if diff := cmp.Diff([]string{"1.0.1 assigned run"}, changed("n1", placed-1)); diff != "" {
		t.Errorf("after placement, n1 (-want +got):\n%s", diff)
	}
	h.started(id)
	if got := changed("n1", placed); len(got) != 0 {
		t.Errorf("after the agents reported the starts, n1's watch sees %q; want nothing (its own report)", got)
	}
	if a := h.alloc("1.0.1"); a.Status != model.AllocRunning || a.AgentIndex != placed || a.ModifyIndex <= placed {
		t.Errorf("1.0.1 after its start report: status %s, agent index %d, modify index %d; want running, %d, above it", a.Status, a.AgentIndex, a.ModifyIndex, placed)
	}
	// Task 0 fails: the job fails, and task 1 on n2 is told to stop.
	h.update(exited(h.alloc("1.0.1"), 2))
	if got := changed("n1", placed); len(got) != 0 {
		t.Errorf("after n1 reported the exit, n1's watch sees %q; want nothing", got)
	}
	if diff := cmp.Diff([]string{"1.1.1 running stop"}, changed("n2", placed)); diff != "" {
		t.Errorf("after the sibling failed, n2 (-want +got):\n%s", diff)
	}
	stopAsked := h.snap().Index
	// n2 goes down before its agent reports: the servers end the task, and
	// n2's agent (should it come back) must hear it.
	h.nodeDown("n2", "no heartbeat")
	if diff := cmp.Diff([]string{"1.1.1 lost stop"}, changed("n2", stopAsked)); diff != "" {
		t.Errorf("after n2 went down (-want +got):\n%s", diff)
	}
}
