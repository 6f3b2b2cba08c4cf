package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/server"
	"github.com/durehq/dure/internal/testkit"
)

func submitJob(t *testing.T, s *server.Server, j *model.Job) model.JobID {
	t.Helper()
	id, err := s.SubmitJob(ctx(t), *j)
	if err != nil {
		t.Fatalf("SubmitJob: %v", err)
	}
	return id
}

// report plays the agent: every live allocation of the job's current
// attempt is reported with the given status.
func report(t *testing.T, s *server.Server, id model.JobID, u fsm.AllocUpdate) {
	t.Helper()
	snap := s.Store().Snapshot()
	j := snap.Job(id)
	var us []fsm.AllocUpdate
	for _, a := range snap.AllocsByJob(id) {
		if a.Attempt == j.Attempt && !a.Status.Terminal() {
			v := u
			v.AllocID, v.Node = a.ID, a.Node
			us = append(us, v)
		}
	}
	if err := s.UpdateAllocs(ctx(t), us); err != nil {
		t.Fatalf("UpdateAllocs: %v", err)
	}
}

func stopping(s *server.Server, id model.JobID) bool {
	j := s.Store().Snapshot().Job(id)
	return j != nil && j.PreemptedBy != 0
}

func TestServerPreemptsLowerPriorityJobAndRequeuesIt(t *testing.T) {
	cfg := config(t, t.TempDir())
	cfg.Sched.PreemptGrace = 2 * time.Second
	s := start(t, cfg)
	register(t, s, "n1", 4)
	low1 := submitJob(t, s, testkit.Job(0).Tasks(2).Build())
	low2 := submitJob(t, s, testkit.Job(0).Tasks(2).Build())
	waitFor(t, "both low-priority jobs to run", func() bool {
		return jobState(s, low1) == model.JobRunning && jobState(s, low2) == model.JobRunning
	})
	report(t, s, low1, fsm.AllocUpdate{Status: model.AllocRunning, StartedAt: time.Now().Add(-time.Minute)})
	report(t, s, low2, fsm.AllocUpdate{Status: model.AllocRunning, StartedAt: time.Now()})

	high := submitJob(t, s, testkit.Job(0).Tasks(2).Priority(5).Build())
	waitFor(t, "a victim to be stopped", func() bool { return stopping(s, low1) || stopping(s, low2) })
	victim, spared := low2, low1 // the one that ran for less time goes first
	if !stopping(s, victim) {
		t.Fatalf("job %d was preempted; want job %d, which has run for less time", low1, low2)
	}
	snap := s.Store().Snapshot()
	for _, a := range snap.AllocsByJob(victim) {
		if a.Desired != model.DesiredStop || a.StopGrace != 2*time.Second || !strings.Contains(a.DesiredReason, "preempted by job 3") {
			t.Errorf("victim alloc %s: desired %s grace %s reason %q; want stop, 2s, preempted by job 3", a.ID, a.Desired, a.StopGrace, a.DesiredReason)
		}
	}
	if j := snap.Job(high); j.State != model.JobPending || j.Reason.Code != model.ReasonPreempting {
		t.Errorf("preemptor: %s %+v; want pending, %s", j.State, j.Reason, model.ReasonPreempting)
	}
	if r, ok := s.LiveReason(high); !ok || r.Code != model.ReasonPreempting || !strings.Contains(r.Message, "job 2") {
		t.Errorf("preemptor's live reason %+v (%v); want Preempting naming job 2", r, ok)
	}
	if e, err := s.Explain(high); err != nil || e.Reason.Code != model.ReasonPreempting {
		t.Errorf("Explain(preemptor) = %+v, %v; want reason %s", e, err, model.ReasonPreempting)
	}

	// Passes while the victim stops pick no more victims.
	for range 3 {
		submitJob(t, s, testkit.Job(0).CPU(64).Build()) // never fits: one more pass each
	}
	waitFor(t, "the passes to run", func() bool {
		return s.Store().Snapshot().Job(high+3).Reason.Code != model.ReasonNewJob
	})
	if stopping(s, spared) {
		t.Fatalf("job %d was preempted too while job %d was stopping", spared, victim)
	}
	if j := s.Store().Snapshot().Job(high); j.State != model.JobPending {
		t.Fatalf("preemptor is %s before its victim stopped; want pending", j.State)
	}

	// The victim checkpoints and exits on SIGTERM: it is requeued and the
	// preemptor takes its room.
	report(t, s, victim, fsm.AllocUpdate{Status: model.AllocExited, ExitCode: 0, Stopped: true})
	waitFor(t, "the preemptor to start", func() bool { return jobState(s, high) == model.JobRunning })
	j := s.Store().Snapshot().Job(victim)
	if j.State != model.JobPending || j.Preemptions != 1 || j.Attempt != 1 {
		t.Errorf("victim: %s, %d preemptions, attempt %d; want pending, 1, 1", j.State, j.Preemptions, j.Attempt)
	}
	var types []string
	for _, e := range j.Events {
		types = append(types, e.Type)
	}
	if diff := cmp.Diff([]string{"submitted", "placed", "preempting", "preempted"}, types); diff != "" {
		t.Errorf("victim's events (-want +got):\n%s", diff)
	}

	// When the preemptor is done the victim runs again.
	report(t, s, high, fsm.AllocUpdate{Status: model.AllocExited})
	waitFor(t, "the victim to run again", func() bool { return jobState(s, victim) == model.JobRunning })
	if j := s.Store().Snapshot().Job(victim); j.Attempt != 2 || j.Preemptions != 1 {
		t.Errorf("victim's second run: attempt %d preemptions %d; want 2, 1", j.Attempt, j.Preemptions)
	}
}

func TestServerWithoutPreemptionNeverStopsJobs(t *testing.T) {
	cfg := config(t, t.TempDir())
	cfg.Sched.NoPreemption = true
	s := start(t, cfg)
	register(t, s, "n1", 2)
	low := submitJob(t, s, testkit.Job(0).Tasks(2).Build())
	waitFor(t, "the low-priority job to run", func() bool { return jobState(s, low) == model.JobRunning })
	high := submitJob(t, s, testkit.Job(0).Tasks(2).Priority(5).Build())
	waitFor(t, "a reason for the high-priority job", func() bool {
		return s.Store().Snapshot().Job(high).Reason.Code != model.ReasonNewJob
	})
	if j := s.Store().Snapshot().Job(high); j.Reason.Code == model.ReasonPreempting {
		t.Errorf("preemptor's reason %+v with preemption off", j.Reason)
	}
	if stopping(s, low) {
		t.Errorf("job %d was preempted with preemption off", low)
	}
}
