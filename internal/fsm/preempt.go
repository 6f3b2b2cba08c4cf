package fsm

import (
	"fmt"
	"slices"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
)

// applyPreemption asks a running job's allocations to stop for a waiting
// job, if the plan still holds: the victim runs, is not already being
// stopped, and the plan names exactly its live allocations; the preemptor
// still waits. The job is requeued once its allocations have ended
// (settlePreempted). It reports whether the preemption took effect.
func applyPreemption(tx *state.WriteTxn, now time.Time, p *PlannedPreemption) bool {
	if !preemptionStillValid(tx, p) {
		return false
	}
	msg := p.Reason.Message
	if msg == "" {
		msg = fmt.Sprintf("preempted by job %d", p.Preemptor)
	}
	for _, id := range p.AllocIDs {
		a := tx.Alloc(id).Copy()
		a.Desired = model.DesiredStop
		a.DesiredReason = msg
		a.StopGrace = p.Grace
		a.PreemptedBy = p.Preemptor
		tx.PutAlloc(a)
	}
	j := tx.Job(p.JobID).Copy()
	j.PreemptedBy = p.Preemptor
	j.Reason = model.Reason{Code: model.ReasonPreempted, Message: msg}
	grace := "the agent's kill grace"
	if p.Grace > 0 {
		grace = "a " + p.Grace.String() + " grace period"
	}
	j.AddEvent(now, "preempting", fmt.Sprintf("%s: stopping %d task(s) with %s", msg, len(p.AllocIDs), grace))
	tx.PutJob(j)
	return true
}

// preemptionStillValid rejects a preemption whose world changed between
// planning and commit (the victim ended, was requeued or is already being
// stopped; the preemptor started or ended) and a malformed one (allocations
// of another job or attempt, ended ones, or not all of the attempt's live
// ones: a job is stopped whole).
func preemptionStillValid(tx *state.WriteTxn, p *PlannedPreemption) bool {
	j := tx.Job(p.JobID)
	if j == nil || j.State != model.JobRunning || j.PreemptedBy != 0 || p.Grace < 0 || len(p.AllocIDs) == 0 {
		return false
	}
	if pr := tx.Job(p.Preemptor); pr == nil || pr.State != model.JobPending {
		return false
	}
	var live []string
	for _, a := range tx.AllocsByJob(j.ID) {
		if a.Attempt != j.Attempt || a.Status.Terminal() {
			continue
		}
		if a.Desired != model.DesiredRun {
			return false
		}
		live = append(live, a.ID)
	}
	listed := slices.Clone(p.AllocIDs)
	slices.Sort(listed)
	slices.Sort(live)
	return slices.Equal(listed, live)
}

// settlePreempted settles a job whose attempt is being preempted: nothing
// happens until all of the attempt's allocations have ended; then the job
// succeeds if every task had exited 0 on its own before the stop reached it,
// and is otherwise requeued at once, whatever the exit codes the stop
// produced, without using up a retry and without retry backoff.
func settlePreempted(j *model.Job, current []*model.Allocation, now time.Time) (changed bool) {
	clean := true
	for _, a := range current {
		if !a.Status.Terminal() {
			return false
		}
		if a.Status != model.AllocExited || a.ExitCode != 0 || a.Signal != "" || a.OOMKilled || a.TimedOut || a.Stopped {
			clean = false
		}
	}
	if clean {
		j.ExitCode = 0
		finish(j, model.JobSucceeded, model.Reason{Code: model.ReasonCompleted, Message: fmt.Sprintf("all %d task(s) exited 0", len(current))}, now)
		return true
	}
	msg := j.Reason.Message
	if j.Reason.Code != model.ReasonPreempted || msg == "" {
		msg = fmt.Sprintf("preempted by job %d", j.PreemptedBy)
	}
	j.State = model.JobPending
	j.Preemptions++ // PreemptedBy stays until the job is placed again (model.Job)
	j.EligibleAt = time.Time{}
	j.Reason = model.Reason{Code: model.ReasonPreempted, Message: fmt.Sprintf(
		"attempt %d %s; requeued (preemption %d; retries are not used up)", j.Attempt, msg, j.Preemptions)}
	j.AddEvent(now, "preempted", j.Reason.Message)
	return true
}
