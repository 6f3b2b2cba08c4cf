package fsm_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// preempt commits a plan that preempts victim for preemptor, naming the
// victim's live allocations of its current attempt.
func (h *harness) preempt(victim, preemptor model.JobID, grace time.Duration) fsm.Result {
	h.t.Helper()
	return h.must(&fsm.CommitPlan{Time: h.now, Term: h.term, Preemptions: []fsm.PlannedPreemption{h.plannedPreemption(victim, preemptor, grace)}})
}

func (h *harness) plannedPreemption(victim, preemptor model.JobID, grace time.Duration) fsm.PlannedPreemption {
	h.t.Helper()
	j := h.job(victim)
	p := fsm.PlannedPreemption{JobID: victim, Preemptor: preemptor, Grace: grace,
		Reason: model.Reason{Code: model.ReasonPreempted, Message: fmt.Sprintf("preempted by job %d of higher priority (5 > 0) in queue default", preemptor)}}
	for _, a := range h.snap().AllocsByJob(victim) {
		if a.Attempt == j.Attempt && !a.Status.Terminal() {
			p.AllocIDs = append(p.AllocIDs, a.ID)
		}
	}
	return p
}

// stoppedBy reports a task that ended after its stop request.
func stoppedBy(a *model.Allocation, code int, signal string) fsm.AllocUpdate {
	u := exited(a, code)
	u.Signal, u.Stopped = signal, true
	return u
}

func TestPreemptionStopsVictimThenRequeuesIt(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	victim := h.submit(testkit.Job(0).Tasks(2).Build())
	h.place(victim, "n1")
	h.started(victim)
	preemptor := h.submit(testkit.Job(0).Priority(5).Build())

	res := h.preempt(victim, preemptor, 30*time.Second)
	if res.Preempted != 1 || res.Skipped != 0 {
		t.Fatalf("CommitPlan result %+v; want 1 preempted", res)
	}
	msg := "preempted by job 2 of higher priority (5 > 0) in queue default"
	for _, id := range []string{"1.0.1", "1.1.1"} {
		a := h.alloc(id)
		if a.Desired != model.DesiredStop || a.DesiredReason != msg || a.StopGrace != 30*time.Second || a.Status != model.AllocRunning {
			t.Errorf("alloc %s: desired %s %q grace %s status %s; want stop, %q, 30s, running", id, a.Desired, a.DesiredReason, a.StopGrace, a.Status, msg)
		}
	}
	j := h.job(victim)
	if j.State != model.JobRunning || j.PreemptedBy != preemptor || j.Reason != (model.Reason{Code: model.ReasonPreempted, Message: msg}) {
		t.Errorf("victim while stopping: state %s preempted by %d reason %+v; want running, by %d, Preempted", j.State, j.PreemptedBy, j.Reason, preemptor)
	}
	if last := j.Events[len(j.Events)-1]; last.Type != "preempting" || last.Message != msg+": stopping 2 task(s) with a 30s grace period" {
		t.Errorf("last event %+v; want preempting with the preemptor and the grace", last)
	}

	// One task checkpoints and exits 0 on SIGTERM; the job waits for the other.
	h.update(stoppedBy(h.alloc("1.0.1"), 0, ""))
	if j := h.job(victim); j.State != model.JobRunning {
		t.Fatalf("victim with a task still stopping is %s; want running until all have ended", j.State)
	}
	doneAt := h.now
	h.update(stoppedBy(h.alloc("1.1.1"), 143, "SIGTERM"))
	j = h.job(victim)
	want := model.Reason{Code: model.ReasonPreempted, Message: "attempt 1 " + msg + "; requeued (preemption 1; retries are not used up)"}
	if j.State != model.JobPending || j.Preemptions != 1 || j.PreemptedBy != preemptor || !j.EligibleAt.IsZero() || !j.EndTime.IsZero() {
		t.Errorf("victim after its tasks ended: state %s preemptions %d by %d eligible %v end %v; want pending, 1, %d (kept until placed again), now, none",
			j.State, j.Preemptions, j.PreemptedBy, j.EligibleAt, j.EndTime, preemptor)
	}
	if diff := cmp.Diff(want, j.Reason); diff != "" {
		t.Errorf("requeue reason (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"submitted", "placed", "preempting", "preempted"}, eventTypes(j)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if e := j.Events[len(j.Events)-1]; !e.Time.Equal(doneAt) {
		t.Errorf("preempted event at %v; want %v, when the last task ended", e.Time, doneAt)
	}
	if a := h.alloc("1.1.1"); !a.Stopped || a.Signal != "SIGTERM" {
		t.Errorf("stopped alloc: stopped=%v signal %q; want the agent's report kept", a.Stopped, a.Signal)
	}
	if live := h.snap().LiveAllocs(); len(live) != 0 {
		t.Errorf("%d allocations live after the victim stopped; want 0", len(live))
	}

	// The next attempt runs to success.
	h.place(victim, "n1")
	h.started(victim)
	h.update(exited(h.alloc("1.0.2"), 0), exited(h.alloc("1.1.2"), 0))
	if j := h.job(victim); j.State != model.JobSucceeded || j.Attempt != 2 || j.Preemptions != 1 {
		t.Errorf("second attempt: state %s attempt %d preemptions %d; want succeeded, 2, 1", j.State, j.Attempt, j.Preemptions)
	}
}

func TestPreemptionDoesNotUseUpRetries(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	h.node("n2")
	victim := h.submit(testkit.Job(0).MaxRetries(1).Build())
	preemptor := h.submit(testkit.Job(0).Priority(5).Build())
	for range 3 { // three preemptions
		h.place(victim, "n1")
		h.started(victim)
		h.preempt(victim, preemptor, time.Second)
		h.update(stoppedBy(h.alloc(h.snap().AllocsByJob(victim)[len(h.snap().AllocsByJob(victim))-1].ID), 143, "SIGTERM"))
	}
	if j := h.job(victim); j.State != model.JobPending || j.Attempt != 3 || j.Preemptions != 3 {
		t.Fatalf("after three preemptions: state %s attempt %d preemptions %d; want pending, 3, 3", j.State, j.Attempt, j.Preemptions)
	}
	// Its one retry is still there: losing attempt 4 requeues it.
	h.place(victim, "n2")
	h.started(victim)
	h.nodeDown("n2", "no heartbeat for 10s")
	j := h.job(victim)
	want := "attempt 4 lost (node n2 went down: no heartbeat for 10s); requeued, retry 1 of 1 after 1s"
	if j.State != model.JobPending || j.Reason.Code != model.ReasonRequeued || j.Reason.Message != want {
		t.Fatalf("lost attempt after preemptions: state %s reason %+v; want pending with %q", j.State, j.Reason, want)
	}
	// And the next loss uses it up.
	h.node("n2")
	h.place(victim, "n2")
	h.started(victim)
	h.nodeDown("n2", "no heartbeat for 10s")
	if j := h.job(victim); j.State != model.JobFailed || j.Reason.Code != model.ReasonNodeLost {
		t.Errorf("second lost attempt with 1 retry: state %s reason %+v; want failed, NodeLost", j.State, j.Reason)
	}
}

// Whatever a stop produces — an exit code, a signal, a loss — the victim
// is requeued; only tasks that had all succeeded on their own finish it.
func TestPreemptedJobEndings(t *testing.T) {
	tests := []struct {
		name   string
		end    func(h *harness) // ends both tasks of job 1 (on n1 and n2)
		want   model.JobState
		reason string
	}{
		{"checkpointed and exited 0 on SIGTERM", func(h *harness) {
			h.update(stoppedBy(h.alloc("1.0.1"), 0, ""), stoppedBy(h.alloc("1.1.1"), 0, ""))
		}, model.JobPending, model.ReasonPreempted},
		{"killed after the grace", func(h *harness) {
			h.update(stoppedBy(h.alloc("1.0.1"), -1, "SIGKILL"), stoppedBy(h.alloc("1.1.1"), -1, "SIGKILL"))
		}, model.JobPending, model.ReasonPreempted},
		{"a task failed on its own first", func(h *harness) {
			h.update(exited(h.alloc("1.0.1"), 3))
			if j := h.job(1); j.State != model.JobRunning {
				h.t.Fatalf("a task exiting 3 while preempted made the job %s; want running until all ended", j.State)
			}
			h.update(stoppedBy(h.alloc("1.1.1"), 143, "SIGTERM"))
		}, model.JobPending, model.ReasonPreempted},
		{"its node went down", func(h *harness) {
			h.update(stoppedBy(h.alloc("1.0.1"), 143, "SIGTERM"))
			h.nodeDown("n2", "no heartbeat for 10s")
		}, model.JobPending, model.ReasonPreempted},
		{"stopped before it started", func(h *harness) {
			h.update(fsm.AllocUpdate{AllocID: "1.0.1", Node: "n1", Status: model.AllocFailed, Message: "stopped before it started"},
				stoppedBy(h.alloc("1.1.1"), 143, "SIGTERM"))
		}, model.JobPending, model.ReasonPreempted},
		{"both tasks had finished before the stop", func(h *harness) {
			h.update(exited(h.alloc("1.0.1"), 0), exited(h.alloc("1.1.1"), 0))
		}, model.JobSucceeded, model.ReasonCompleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.node("n1")
			h.node("n2")
			victim := h.submit(testkit.Job(0).Tasks(2).Build())
			h.place(victim, "n1", "n2")
			h.started(victim)
			preemptor := h.submit(testkit.Job(0).Priority(5).Build())
			h.preempt(victim, preemptor, time.Second)
			tt.end(h)
			j := h.job(victim)
			wantBy := model.JobID(0) // ended: no claim left
			if tt.want == model.JobPending {
				wantBy = preemptor // requeued: kept until placed again
			}
			if j.State != tt.want || j.Reason.Code != tt.reason || j.PreemptedBy != wantBy {
				t.Errorf("state %s reason %+v preempted by %d; want %s, %s, %d", j.State, j.Reason, j.PreemptedBy, tt.want, tt.reason, wantBy)
			}
			wantPreemptions := 0
			if tt.want == model.JobPending {
				wantPreemptions = 1
			}
			if j.Preemptions != wantPreemptions {
				t.Errorf("preemptions %d; want %d", j.Preemptions, wantPreemptions)
			}
		})
	}
}

func TestStalePreemptionsAreSkipped(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness, p *fsm.PlannedPreemption) // job 1 runs two tasks on n1; job 2 waits
	}{
		{"victim already ended", func(h *harness, _ *fsm.PlannedPreemption) {
			h.update(exited(h.alloc("1.0.1"), 0), exited(h.alloc("1.1.1"), 0))
		}},
		{"one victim task already ended", func(h *harness, _ *fsm.PlannedPreemption) {
			h.update(exited(h.alloc("1.0.1"), 0))
		}},
		{"victim cancelled", func(h *harness, _ *fsm.PlannedPreemption) {
			h.must(&fsm.CancelJob{Time: h.now, ID: 1})
		}},
		{"victim already being preempted", func(h *harness, _ *fsm.PlannedPreemption) {
			h.preempt(1, 2, time.Second)
		}},
		{"preemptor cancelled", func(h *harness, _ *fsm.PlannedPreemption) {
			h.must(&fsm.CancelJob{Time: h.now, ID: 2})
		}},
		{"preemptor does not exist", func(_ *harness, p *fsm.PlannedPreemption) { p.Preemptor = 99 }},
		{"victim does not exist", func(_ *harness, p *fsm.PlannedPreemption) { p.JobID = 99 }},
		{"not all of the victim's allocations", func(_ *harness, p *fsm.PlannedPreemption) { p.AllocIDs = p.AllocIDs[:1] }},
		{"an allocation of another attempt", func(_ *harness, p *fsm.PlannedPreemption) { p.AllocIDs[1] = "1.1.2" }},
		{"an allocation listed twice", func(_ *harness, p *fsm.PlannedPreemption) { p.AllocIDs[1] = p.AllocIDs[0] }},
		{"no allocations", func(_ *harness, p *fsm.PlannedPreemption) { p.AllocIDs = nil }},
		{"negative grace", func(_ *harness, p *fsm.PlannedPreemption) { p.Grace = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.node("n1")
			victim := h.submit(testkit.Job(0).Tasks(2).Build())
			h.place(victim, "n1")
			h.started(victim)
			h.submit(testkit.Job(0).Priority(5).Build())
			p := h.plannedPreemption(victim, 2, time.Second) // planned before the change
			tt.setup(h, &p)
			before := jobsAndAllocs(h)
			res := h.must(&fsm.CommitPlan{Time: h.now, Term: h.term, Preemptions: []fsm.PlannedPreemption{p}})
			if res.Preempted != 0 || res.Skipped != 1 {
				t.Errorf("result %+v; want the preemption skipped", res)
			}
			if diff := cmp.Diff(before, jobsAndAllocs(h)); diff != "" {
				t.Errorf("a skipped preemption changed jobs or allocations (-before +after):\n%s", diff)
			}
		})
	}
}

func TestCancelWhilePreempting(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	victim := h.submit(testkit.Job(0).Build())
	h.place(victim, "n1")
	h.started(victim)
	h.preempt(victim, h.submit(testkit.Job(0).Priority(5).Build()), time.Second)
	h.must(&fsm.CancelJob{Time: h.now, ID: victim})
	h.update(stoppedBy(h.alloc("1.0.1"), 143, "SIGTERM"))
	if j := h.job(victim); j.State != model.JobCancelled || j.Preemptions != 0 || j.PreemptedBy != 0 {
		t.Errorf("cancelled while preempted: state %s preemptions %d by %d; want cancelled, 0, 0", j.State, j.Preemptions, j.PreemptedBy)
	}
}

// jobsAndAllocs lists every job and allocation.
func jobsAndAllocs(h *harness) []any {
	var out []any
	h.snap().Jobs(func(j *model.Job) bool {
		out = append(out, j)
		for _, a := range h.snap().AllocsByJob(j.ID) {
			out = append(out, a)
		}
		return true
	})
	return out
}
