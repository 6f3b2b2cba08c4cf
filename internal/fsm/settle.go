package fsm

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
)

// settleJob recomputes a job's state after some of its allocations changed:
// a failed task fails the job (and stops its siblings), lost work requeues it
// while retries remain, and the job succeeds when every task exited 0. The job
// is written only when it changed: watchers of a job (dure wait, dure job)
// follow its allocations as well (state.Snapshot.AllocsByJobWatch), so a
// task's start need not rewrite its job.
func settleJob(tx *state.WriteTxn, id model.JobID, now time.Time) {
	old := tx.Job(id)
	if old == nil || old.State != model.JobRunning {
		return // terminal, or already requeued
	}
	var current []*model.Allocation
	for _, a := range tx.AllocsByJob(id) {
		if a.Attempt == old.Attempt {
			current = append(current, a)
		}
	}
	sort.Slice(current, func(a, b int) bool { return current[a].TaskIndex < current[b].TaskIndex })
	if old.PreemptedBy != 0 {
		j := old.Copy()
		if settlePreempted(j, current, now) {
			tx.PutJob(j)
		}
		return
	}

	var failed, lost *model.Allocation
	done := true
	for _, a := range current {
		switch {
		case a.Status == model.AllocLost:
			if lost == nil {
				lost = a
			}
		case a.Status == model.AllocFailed || (a.Status == model.AllocExited && (a.ExitCode != 0 || a.OOMKilled || a.TimedOut || a.Signal != "")):
			if failed == nil {
				failed = a
			}
		case !a.Status.Terminal():
			done = false
		}
	}
	if failed == nil && lost == nil && !done {
		return // tasks still running: nothing about the job changed
	}
	j := old.Copy()
	switch {
	case failed != nil:
		j.ExitCode = failed.ExitCode
		finish(j, model.JobFailed, failureReason(failed), now)
		stopLiveAllocs(tx, id, fmt.Sprintf("task %d of the job failed", failed.TaskIndex))
	case lost != nil && j.Attempt-j.Preemptions <= j.MaxRetries:
		// Attempts that ended by preemption do not use up retries.
		retry := j.Attempt - j.Preemptions
		j.State = model.JobPending
		backoff := model.RetryBackoff(retry)
		j.EligibleAt = now.Add(backoff)
		j.Reason = model.Reason{Code: model.ReasonRequeued, Message: fmt.Sprintf(
			"attempt %d lost (%s); requeued, retry %d of %d after %s", j.Attempt, lost.Message, retry, j.MaxRetries, backoff)}
		j.AddEvent(now, "requeued", j.Reason.Message)
		stopLiveAllocs(tx, id, "job requeued after lost work")
	case lost != nil:
		msg := fmt.Sprintf("task %d lost: %s", lost.TaskIndex, lost.Message)
		if j.MaxRetries > 0 {
			msg += fmt.Sprintf(" (no retries left of %d)", j.MaxRetries)
		}
		finish(j, model.JobFailed, model.Reason{Code: model.ReasonNodeLost, Message: msg}, now)
		stopLiveAllocs(tx, id, "job failed after lost work")
	default: // done
		j.ExitCode = 0
		finish(j, model.JobSucceeded, model.Reason{Code: model.ReasonCompleted, Message: fmt.Sprintf("all %d task(s) exited 0", len(current))}, now)
	}
	tx.PutJob(j)
}

func failureReason(a *model.Allocation) model.Reason {
	switch {
	case a.Status == model.AllocFailed:
		return model.Reason{Code: model.ReasonStartFailed, Message: fmt.Sprintf("task %d could not start on %s: %s", a.TaskIndex, a.Node, a.Message)}
	case a.OOMKilled:
		return model.Reason{Code: model.ReasonOOM, Message: fmt.Sprintf("task %d on %s was killed for exceeding its memory limit %s", a.TaskIndex, a.Node, model.FormatBytes(a.Resources.MemoryBytes))}
	case a.TimedOut:
		return model.Reason{Code: model.ReasonWalltime, Message: fmt.Sprintf("task %d on %s exceeded the walltime %s", a.TaskIndex, a.Node, a.Walltime)}
	case a.Signal != "":
		return model.Reason{Code: model.ReasonTaskFailed, Message: fmt.Sprintf("task %d on %s was killed by %s", a.TaskIndex, a.Node, a.Signal)}
	case a.ExitCode < 0:
		// No exit status: its supervisor died (killed, out of memory)
		// before recording one; the agent says so in the message.
		msg := a.Message
		if msg == "" {
			msg = "lost"
		}
		return model.Reason{Code: model.ReasonTaskFailed, Message: fmt.Sprintf("task %d on %s ended without an exit status (%s)", a.TaskIndex, a.Node, msg)}
	}
	return model.Reason{Code: model.ReasonTaskFailed, Message: fmt.Sprintf("task %d on %s exited with code %d", a.TaskIndex, a.Node, a.ExitCode)}
}

// finish moves a job to a terminal state.
func finish(j *model.Job, st model.JobState, r model.Reason, now time.Time) {
	j.State = st
	j.PreemptedBy = 0
	j.Reason = r
	j.EndTime = now
	j.AddEvent(now, string(st), r.Message)
}

// stopLiveAllocs asks the agents to stop every live allocation of a job.
func stopLiveAllocs(tx *state.WriteTxn, id model.JobID, reason string) {
	for _, a := range tx.AllocsByJob(id) {
		if a.Status.Terminal() || a.Desired == model.DesiredStop {
			continue
		}
		c := a.Copy()
		c.Desired = model.DesiredStop
		c.DesiredReason = reason
		tx.PutAlloc(c)
	}
}

func sortedJobIDs(m map[model.JobID]bool) []model.JobID {
	out := make([]model.JobID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

func joinSorted(m map[string]bool) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
