package fsm

import (
	"fmt"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
)

// Job arrays and dependencies. An array is one SubmitJob entry that the FSM
// expands into one job per index with consecutive IDs; a dependency that can
// never be met cancels the job (rather than leaving it pending forever, as
// Slurm does unless told kill_invalid_depend), decided when the leader
// commits a plan that reports it, and re-checked here against the state.

// newPendingJob prepares a fresh copy of a submitted job for the table.
func newPendingJob(j *model.Job, index uint64, note string) {
	// Whatever the command carries, a new job has not run yet.
	j.Attempt, j.StartTime, j.EndTime, j.ExitCode, j.StartedTasks = 0, time.Time{}, time.Time{}, 0, 0
	j.State = model.JobPending
	j.Reason = model.Reason{Code: model.ReasonNewJob, Message: "submitted; waiting for the scheduler"}
	j.CreateIndex = index
	j.Events = nil
	j.AddEvent(j.SubmitTime, "submitted", fmt.Sprintf("submitted by %s to queue %s%s", j.Owner, j.Queue, note))
}

// checkDependencies refuses dependencies no job could ever have: on a job
// submitted later (or on the job itself), or of an unknown type. The API
// layer refuses unknown jobs with a better message first.
func checkDependencies(j *model.Job) error {
	for _, d := range j.Dependencies {
		switch d.Type {
		case model.AfterOK, model.AfterAny, model.AfterNotOK:
		default:
			return fmt.Errorf("dependency %s: unknown type %q: %w", d, d.Type, ErrInvalid)
		}
		if d.JobID == 0 || d.JobID >= j.ID {
			return fmt.Errorf("dependency %s: job %d may only depend on jobs submitted before it: %w", d, uint64(j.ID), ErrInvalid)
		}
	}
	return nil
}

// applySubmitArray adds every element of an array (c.Array is set).
func applySubmitArray(tx *state.WriteTxn, c *SubmitJob) Result {
	if prev := tx.JobByIdempotencyKey(c.Job.Owner, c.Job.IdempotencyKey); prev != nil {
		return Result{JobID: arrayID(prev)}
	}
	if len(c.Array.Ranges) > model.MaxArrayRanges {
		return Result{Err: fmt.Errorf("array: %d ranges, at most %d: %w", len(c.Array.Ranges), model.MaxArrayRanges, ErrInvalid)}
	}
	idx := c.Array.Indices(model.MaxArraySize)
	if len(idx) == 0 {
		return Result{Err: fmt.Errorf("array: no indices, a malformed range or more than %d elements: %w", model.MaxArraySize, ErrInvalid)}
	}
	if c.Array.Throttle < 0 {
		return Result{Err: fmt.Errorf("array: throttle %d is negative: %w", c.Array.Throttle, ErrInvalid)}
	}
	first := c.Job.ID
	if first == 0 || uint64(first)+uint64(len(idx)) < uint64(first) {
		return Result{Err: fmt.Errorf("array: first ID %d leaves no room for %d elements: %w", uint64(first), len(idx), ErrInvalid)}
	}
	for k := range idx {
		if id := first + model.JobID(k); tx.Job(id) != nil {
			return Result{Err: fmt.Errorf("job %d already exists: %w", id, ErrConflict)}
		}
	}
	if tx.Queue(c.Job.Queue) == nil {
		return Result{Err: fmt.Errorf("queue %q: %w", c.Job.Queue, ErrNotFound)}
	}
	base := c.Job.Copy()
	if err := checkDependencies(base); err != nil {
		return Result{Err: err}
	}
	for k, i := range idx {
		// Elements share the (immutable) groups and dependencies of the
		// submission: stored jobs are never mutated, only replaced.
		j := *base
		j.ID = first + model.JobID(k)
		j.ArrayParent, j.ArrayIndex, j.ArrayThrottle = first, i, c.Array.Throttle
		newPendingJob(&j, tx.Index, fmt.Sprintf(" as element %d of array %d (%d elements)", i, uint64(first), len(idx)))
		tx.PutJob(&j)
	}
	return Result{JobID: first}
}

// arrayID is the ID a submission returned: the array's for an element.
func arrayID(j *model.Job) model.JobID {
	if j.ArrayParent != 0 {
		return j.ArrayParent
	}
	return j.ID
}

// applyCancelArray cancels every unfinished element of an array.
func applyCancelArray(tx *state.WriteTxn, c *CancelArray) Result {
	elems := tx.ArrayElements(c.ArrayID)
	if len(elems) == 0 {
		return Result{Err: fmt.Errorf("array %d: %w", uint64(c.ArrayID), ErrNotFound)}
	}
	msg := "cancelled with its array"
	if c.Reason != "" {
		msg += ": " + c.Reason
	}
	n := 0
	for _, old := range elems {
		if old.State.Terminal() {
			continue
		}
		j := old.Copy()
		finish(j, model.JobCancelled, model.Reason{Code: model.ReasonCancelled, Message: msg}, c.Time)
		tx.PutJob(j)
		stopLiveAllocs(tx, j.ID, "job cancelled")
		n++
	}
	if n == 0 {
		return Result{Err: fmt.Errorf("array %d: all %d elements already finished: %w", uint64(c.ArrayID), len(elems), ErrConflict)}
	}
	return Result{JobID: c.ArrayID}
}

// dependencyNever says why one of j's dependencies can never be satisfied
// in the current state, or returns false.
func dependencyNever(tx *state.WriteTxn, j *model.Job) (string, bool) {
	for _, d := range j.Dependencies {
		if d.Array {
			elems := tx.ArrayElements(d.JobID)
			states := make([]model.JobState, len(elems))
			for i, e := range elems {
				states[i] = e.State
			}
			_, never, k := model.ArrayDependencyVerdict(d.Type, states)
			switch {
			case !never:
				continue
			case k < 0:
				return fmt.Sprintf("dependency %s can never be satisfied: array %d no longer exists", d, uint64(d.JobID)), true
			default:
				return fmt.Sprintf("dependency %s can never be satisfied: element %s of array %d %s", d, elems[k].DisplayName(), uint64(d.JobID), elems[k].State), true
			}
		}
		dep := tx.Job(d.JobID)
		if dep == nil {
			return fmt.Sprintf("dependency %s can never be satisfied: job %d no longer exists", d, uint64(d.JobID)), true
		}
		if _, never := d.Satisfied(dep.State); never {
			return fmt.Sprintf("dependency %s can never be satisfied: job %s %s", d, dep.DisplayName(), dep.State), true
		}
	}
	return "", false
}

// cancelNeverSatisfiable ends a pending job whose dependency can never be
// met, if the state agrees with the plan that reported it.
func cancelNeverSatisfiable(tx *state.WriteTxn, old *model.Job, now time.Time) {
	if why, never := dependencyNever(tx, old); never {
		j := old.Copy()
		finish(j, model.JobCancelled, model.Reason{Code: model.ReasonDependencyNever, Message: why}, now)
		tx.PutJob(j)
	}
}

// prunable filters ids down to the finished jobs that may be forgotten:
// none with live allocations (forgetting it would free resources still in
// use), and none that a pending job depends on (its dependent would then
// read the dependency as unknown and never satisfiable).
func prunable(tx *state.WriteTxn, ids []model.JobID) []model.JobID {
	var deps, arrays map[model.JobID]bool
	for _, p := range tx.JobsInState(model.JobPending) {
		for _, d := range p.Dependencies {
			if deps == nil {
				deps, arrays = map[model.JobID]bool{}, map[model.JobID]bool{}
			}
			if d.Array {
				arrays[d.JobID] = true
			} else {
				deps[d.JobID] = true
			}
		}
	}
	var out []model.JobID
	for _, id := range ids {
		j := tx.Job(id)
		if j == nil || !j.State.Terminal() || hasLiveAllocs(tx, id) || deps[id] || (j.ArrayParent != 0 && arrays[j.ArrayParent]) {
			continue
		}
		out = append(out, id)
	}
	return out
}

// startedText says how many tasks an attempt started: "4 task(s)", or for a
// partial gang "2 of 4 tasks (gang minimum 2)".
func startedText(j *model.Job) string {
	if n := j.TaskCount(); j.StartedTasks < n {
		return fmt.Sprintf("%d of %d tasks (gang minimum %d)", j.StartedTasks, n, j.GangSize())
	}
	return fmt.Sprintf("%d task(s)", j.StartedTasks)
}
