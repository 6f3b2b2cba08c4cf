package fsm

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
)

// Errors Apply returns for commands that cannot be applied. They are results,
// not failures of the log: every replica reaches the same verdict.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the command is malformed (the API layer refuses such
	// input first; this guards the state against a bad entry).
	ErrInvalid = errors.New("invalid")
)

// Result is what Apply returns for one entry.
type Result struct {
	Err       error
	JobID     model.JobID   // SubmitJob: the job's (or array's) ID (an earlier one's, for a repeated idempotency key)
	JobIDs    []model.JobID // SubmitJobs: each job's ID, in order, as JobID
	Placed    int           // CommitPlan: jobs placed
	Preempted int           // CommitPlan: jobs asked to stop for a preemptor
	Skipped   int           // CommitPlan: placements and preemptions dropped because state changed under the plan
}

// FSM applies commands to a state store.
type FSM struct {
	store *state.Store
	// halted is set, once and for good, by the first entry written by a
	// newer dure (ErrNewerEntry); from then on nothing is applied.
	halted atomic.Pointer[error]
	onHalt func(error)
}

// New returns an FSM writing into store.
func New(store *state.Store) *FSM { return &FSM{store: store} }

// OnHalt sets a function called once, from Apply, when the FSM halts. Set
// it before the first Apply.
func (f *FSM) OnHalt(fn func(error)) { f.onHalt = fn }

// Halted returns why the FSM stopped applying the log, or nil if it has not.
// A halted FSM's state stays at the entry before the one it could not read,
// so the server must neither serve it as current nor snapshot it (a
// snapshot would claim the unapplied entries); a server restarted on a
// binary that knows the entry replays the log from there.
func (f *FSM) Halted() error {
	if p := f.halted.Load(); p != nil {
		return *p
	}
	return nil
}

// Store is the state the FSM writes.
func (f *FSM) Store() *state.Store { return f.store }

// Apply applies one log entry at (index, term).
func (f *FSM) Apply(index, term uint64, data []byte) Result {
	if err := f.Halted(); err != nil {
		return Result{Err: err}
	}
	cmd, err := Decode(data)
	if errors.Is(err, ErrNewerEntry) {
		herr := fmt.Errorf("log entry %d: %w; this server stops applying the log until it runs a dure that knows the entry", index, err)
		f.halted.Store(&herr)
		if f.onHalt != nil {
			f.onHalt(herr)
		}
		return Result{Err: herr}
	}
	if err != nil {
		// Every replica decodes the same bytes the same way: skip the entry
		// everywhere, but still advance the index.
		_ = f.store.Write(index, func(*state.WriteTxn) error { return nil })
		return Result{Err: err}
	}
	var res Result
	werr := f.store.Write(index, func(tx *state.WriteTxn) error {
		res = apply(tx, index, term, cmd)
		return res.Err
	})
	if werr != nil {
		_ = f.store.Write(index, func(*state.WriteTxn) error { return nil })
	}
	return res
}

// Restore replaces the state with a snapshot.
func (f *FSM) Restore(r io.Reader) error { return f.store.Restore(r) }

func apply(tx *state.WriteTxn, index, term uint64, cmd Command) Result {
	switch c := cmd.(type) {
	case *RegisterNode:
		return applyRegisterNode(tx, c)
	case *NodeStatus:
		return applyNodeStatus(tx, c)
	case *DrainNode:
		return applyDrainNode(tx, c)
	case *SubmitJob:
		return applySubmitJob(tx, c)
	case *SubmitJobs:
		return applySubmitJobs(tx, c)
	case *CancelJob:
		return applyCancelJob(tx, c)
	case *CommitPlan:
		return applyCommitPlan(tx, index, c)
	case *AllocUpdates:
		return applyAllocUpdates(tx, c)
	case *PruneJobs:
		for _, id := range prunable(tx, c.IDs) {
			tx.DeleteJob(id)
		}
		return Result{}
	case *CancelArray:
		return applyCancelArray(tx, c)
	case *UpsertQueue:
		q := c.Queue
		if old := tx.Queue(q.Name); old != nil {
			q.CreateIndex = old.CreateIndex
		} else {
			q.CreateIndex = index
		}
		tx.PutQueue(&q)
		return Result{}
	}
	return Result{Err: fmt.Errorf("%w: no handler for %T", ErrBadEntry, cmd)}
}

func applyRegisterNode(tx *state.WriteTxn, c *RegisterNode) Result {
	n := c.Node.Copy()
	if old := tx.Node(n.Name); old != nil {
		// Operator decisions outlive agent restarts.
		n.Drain, n.DrainReason = old.Drain, old.DrainReason
		n.CreateIndex = old.CreateIndex
		n.StatusChangedAt = old.StatusChangedAt
		if old.Status != model.NodeReady {
			n.StatusChangedAt = c.Time
		}
	} else {
		n.CreateIndex = tx.Index
		n.StatusChangedAt = c.Time
	}
	n.Status = model.NodeReady
	n.StatusReason = "registered"
	n.RegisteredAt = c.Time
	tx.PutNode(n)
	return Result{}
}

func applyNodeStatus(tx *state.WriteTxn, c *NodeStatus) Result {
	old := tx.Node(c.Name)
	if old == nil {
		return Result{Err: fmt.Errorf("node %q: %w", c.Name, ErrNotFound)}
	}
	n := old.Copy()
	n.Status = c.Status
	n.StatusReason = c.Reason
	n.StatusChangedAt = c.Time
	tx.PutNode(n)
	if c.Status != model.NodeDown {
		return Result{}
	}
	allocs := tx.AllocsByNode(c.Name)
	affected := map[model.JobID]bool{}
	for _, a := range allocs {
		if a.Status.Terminal() {
			continue
		}
		lost := a.Copy()
		lost.Status = model.AllocLost
		lost.FinishedAt = c.Time
		lost.Message = fmt.Sprintf("node %s went down: %s", c.Name, c.Reason)
		tx.PutAlloc(lost)
		affected[a.JobID] = true
	}
	for _, id := range sortedJobIDs(affected) {
		settleJob(tx, id, c.Time)
	}
	return Result{}
}

func applyDrainNode(tx *state.WriteTxn, c *DrainNode) Result {
	old := tx.Node(c.Name)
	if old == nil {
		return Result{Err: fmt.Errorf("node %q: %w", c.Name, ErrNotFound)}
	}
	n := old.Copy()
	n.Drain = c.Drain
	n.DrainReason = c.Reason
	if !c.Drain {
		n.DrainReason = ""
	}
	tx.PutNode(n)
	return Result{}
}

func applySubmitJob(tx *state.WriteTxn, c *SubmitJob) Result {
	if c.Array != nil {
		return applySubmitArray(tx, c)
	}
	if prev := tx.JobByIdempotencyKey(c.Job.Owner, c.Job.IdempotencyKey); prev != nil {
		return Result{JobID: prev.ID}
	}
	// IDs come from the leader's counter, so they are fresh, but concurrent
	// submissions may commit out of ID order: only an existing ID conflicts.
	if c.Job.ID == 0 || tx.Job(c.Job.ID) != nil {
		return Result{Err: fmt.Errorf("job %d already exists: %w", c.Job.ID, ErrConflict)}
	}
	if tx.Queue(c.Job.Queue) == nil {
		return Result{Err: fmt.Errorf("queue %q: %w", c.Job.Queue, ErrNotFound)}
	}
	j := c.Job.Copy()
	if err := checkDependencies(j); err != nil {
		return Result{Err: err}
	}
	j.ArrayParent, j.ArrayIndex, j.ArrayThrottle = 0, 0, 0 // only an Array entry makes elements
	newPendingJob(j, tx.Index, "")
	tx.PutJob(j)
	return Result{JobID: j.ID}
}

// applySubmitJobs applies every job of the entry, or none: the first that
// fails fails the entry (and the store discards the transaction).
func applySubmitJobs(tx *state.WriteTxn, c *SubmitJobs) Result {
	ids := make([]model.JobID, 0, len(c.Jobs))
	for i := range c.Jobs {
		res := applySubmitJob(tx, &SubmitJob{Job: c.Jobs[i]})
		if res.Err != nil {
			return Result{Err: fmt.Errorf("jobs[%d]: %w", i, res.Err)}
		}
		ids = append(ids, res.JobID)
	}
	return Result{JobIDs: ids}
}

func applyCancelJob(tx *state.WriteTxn, c *CancelJob) Result {
	old := tx.Job(c.ID)
	if old == nil {
		return Result{Err: fmt.Errorf("job %d: %w", c.ID, ErrNotFound)}
	}
	if old.State.Terminal() {
		return Result{Err: fmt.Errorf("job %d already %s: %w", c.ID, old.State, ErrConflict)}
	}
	j := old.Copy()
	msg := "cancelled"
	if c.Reason != "" {
		msg = "cancelled: " + c.Reason
	}
	finish(j, model.JobCancelled, model.Reason{Code: model.ReasonCancelled, Message: msg}, c.Time)
	tx.PutJob(j)
	stopLiveAllocs(tx, j.ID, "job cancelled")
	return Result{JobID: j.ID}
}

func applyCommitPlan(tx *state.WriteTxn, index uint64, c *CommitPlan) Result {
	var res Result
	for _, pj := range c.Jobs {
		if !planStillValid(tx, pj) {
			res.Skipped++
			continue
		}
		j := tx.Job(pj.JobID).Copy()
		j.State = model.JobRunning
		j.Attempt++
		j.StartTime = c.Time
		j.StartedTasks = len(pj.Allocs)
		j.Reason = model.Reason{}
		j.PreemptedBy = 0 // placed again: no longer waits behind its preemptor
		nodes := map[string]bool{}
		for i := range pj.Allocs {
			a := pj.Allocs[i].Copy()
			a.Attempt = j.Attempt
			a.ID = model.AllocID(j.ID, a.TaskIndex, j.Attempt)
			a.CreateTerm = c.Term
			a.CreateIndex = index
			a.CreatedAt = c.Time
			a.Status = model.AllocAssigned
			a.Desired = model.DesiredRun
			tx.PutAlloc(a)
			nodes[a.Node] = true
		}
		j.AddEvent(c.Time, "placed", fmt.Sprintf("attempt %d: %s placed on %s", j.Attempt, startedText(j), joinSorted(nodes)))
		tx.PutJob(j)
		res.Placed++
	}
	for i := range c.Preemptions {
		if applyPreemption(tx, c.Time, &c.Preemptions[i]) {
			res.Preempted++
		} else {
			res.Skipped++
		}
	}
	for _, r := range c.Reasons {
		old := tx.Job(r.JobID)
		if old == nil || old.State != model.JobPending || old.Reason == r.Reason {
			continue
		}
		if r.Reason.Code == model.ReasonDependencyNever {
			// Cancel the job, or, if the state does not bear the plan
			// out, keep the old reason so a later plan can say it again.
			cancelNeverSatisfiable(tx, old, c.Time)
			continue
		}
		j := old.Copy()
		j.Reason = r.Reason
		tx.PutJob(j)
	}
	return res
}

// planStillValid rejects a planned job whose world changed between planning
// and commit: it is no longer pending, or a node it uses is gone, down or
// drained. It also rejects a malformed entry (allocations of another job,
// fewer than the gang minimum or more than the task count, or not one each
// for tasks 0..n-1), which would otherwise leave a task unplaced or file an
// allocation under the wrong job. A partial gang (MinTasks) starts with its
// first n tasks. Capacity was verified by the leader's plan applier, which
// applies plans one at a time; nothing else in the log adds load to a node.
func planStillValid(tx *state.WriteTxn, pj PlannedJob) bool {
	j := tx.Job(pj.JobID)
	n := len(pj.Allocs)
	if j == nil || j.State != model.JobPending || n == 0 || n < j.GangSize() || n > j.TaskCount() {
		return false
	}
	seen := make([]bool, n)
	for _, a := range pj.Allocs {
		if a.JobID != pj.JobID || a.TaskIndex < 0 || a.TaskIndex >= n || seen[a.TaskIndex] {
			return false
		}
		seen[a.TaskIndex] = true
		node := tx.Node(a.Node)
		if node == nil || !node.Schedulable() {
			return false
		}
	}
	return true
}

func hasLiveAllocs(tx *state.WriteTxn, id model.JobID) bool {
	for _, a := range tx.AllocsByJob(id) {
		if !a.Status.Terminal() {
			return true
		}
	}
	return false
}

func applyAllocUpdates(tx *state.WriteTxn, c *AllocUpdates) Result {
	affected := map[model.JobID]bool{}
	for _, u := range c.Updates {
		old := tx.Alloc(u.AllocID)
		// Fencing: only the node an allocation lives on may report on it,
		// and a terminal allocation never changes again (a completion is
		// recorded once, whatever the agent retries).
		if old == nil || old.Node != u.Node || old.Status.Terminal() {
			continue
		}
		a := old.Copy()
		switch u.Status {
		case model.AllocRunning:
			if old.Status != model.AllocAssigned {
				continue
			}
			a.Status = model.AllocRunning
			a.StartedAt = u.StartedAt
		case model.AllocExited, model.AllocFailed:
			a.Status = u.Status
			a.ExitCode, a.Signal, a.OOMKilled, a.TimedOut = u.ExitCode, u.Signal, u.OOMKilled, u.TimedOut
			a.Stopped = u.Stopped
			a.Message = u.Message
			if !u.StartedAt.IsZero() {
				a.StartedAt = u.StartedAt
			}
			a.FinishedAt = u.FinishedAt
			if a.FinishedAt.IsZero() {
				a.FinishedAt = c.Time
			}
		default:
			continue
		}
		tx.PutAllocReport(a)
		affected[a.JobID] = true
	}
	for _, id := range sortedJobIDs(affected) {
		settleJob(tx, id, c.Time)
	}
	return Result{}
}
