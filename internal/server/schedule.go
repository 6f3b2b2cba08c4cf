package server

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/state"
)

// scheduleLoop runs a scheduling pass after every state change: snapshot →
// sched.Schedule → verify against the latest state → one CommitPlan entry.
// Changes that arrive during a pass coalesce into one more pass.
//
// A pass costs time in proportion to the pending jobs, so under a flood of
// submissions and task ends back-to-back passes would each place a few jobs
// and eat a core. After a pass that took d, the next one starts no sooner
// than passPacing×d later: the scheduler then uses at most 1/(1+passPacing)
// of a core and each pass places what accumulated meanwhile. On an idle
// cluster a pass takes well under a millisecond, so a change is still acted
// on at once.
func (s *Server) scheduleLoop(ctx context.Context) {
	log := s.log.With("component", "scheduler")
	// The first pass runs at once: a new leader may inherit pending jobs
	// that no write will mention again (the old leader died before placing
	// them, or this server restarted).
	first := make(chan struct{})
	close(first)
	var changed <-chan struct{} = first
	term := s.raft.CurrentTerm()
	var backoffWake <-chan time.Time    // fires when the earliest held-back job becomes eligible
	recheck := time.NewTimer(time.Hour) // time alone may change the plan (recheckAfter)
	recheck.Stop()
	defer recheck.Stop()
	var recheckWake <-chan time.Time // recheck.C while armed
	var notBefore time.Time          // pacing: no pass before this
	var ownCommit uint64             // log index of our last plan, if nothing needs a second look
	pace := time.NewTimer(0)
	defer pace.Stop()
	var scratch sched.Scratch // memory one pass leaves to the next
	var cache schedCache      // pending jobs and history, kept up to date
	for {
		woken := false // by the backoff timer
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-backoffWake:
			woken, backoffWake = true, nil
		case <-recheckWake:
			woken, recheckWake = true, nil
		}
		if wait := time.Until(notBefore); wait > 0 {
			pace.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-pace.C:
			}
		}
		// Take the next channel before the snapshot: a change after the
		// snapshot then always causes another pass.
		changed = s.store.Changed()
		passStart := time.Now()
		now := s.cfg.Now()
		snap := cache.snapshot(s.store)
		if ownCommit != 0 && snap.Index == ownCommit && !woken {
			// The only change since the last pass is that pass's own plan:
			// a pass now would find the same (held-back jobs keep their
			// timer).
			ownCommit = 0
			continue
		}
		ownCommit = 0
		in, held, wake := cache.input(snap, now)
		backoffWake = nil
		if !wake.IsZero() {
			backoffWake = time.After(wake.Sub(now))
		}
		recheck.Stop()
		recheckWake = nil
		if len(in.Pending) == 0 && len(held) == 0 {
			continue
		}
		plan := scratch.Schedule(in, now, s.schedConfig())
		cache.heads = 2 * len(plan.Placements)
		if d, ok := recheckAfter(plan, now, s.cfg.SchedRecheck); ok {
			recheck.Reset(d)
			recheckWake = recheck.C
		}
		if plan.Reasons == nil {
			plan.Reasons = map[model.JobID]model.Reason{}
		}
		waitingForVictims(snap, plan.Reasons)
		for id, r := range held {
			plan.Reasons[id] = r
		}
		// verifyPlan looks up every job it has a reason for in the latest
		// state; hand it only the reasons whose code changed.
		changes := *plan
		changes.Reasons = reasonChanges(snap, in.Pending, held, plan.Reasons)
		cache.tailReasonChanges(plan.Tails, changes.Reasons)
		live := &livePass{reasons: plan.Reasons, tails: cache.liveTails(plan.Tails)}
		cmd := verifyPlan(s.store.Snapshot(), &changes, term, s.cfg.Now(), s.cfg.Sched.PreemptGrace)
		notBefore = time.Now().Add(passPacing * time.Since(passStart))
		if len(cmd.Jobs) == 0 && len(cmd.Reasons) == 0 && len(cmd.Preemptions) == 0 {
			s.liveReasons.Store(live)
			continue
		}
		f, err := s.propose(ctx, cmd)
		var res fsm.Result
		if err == nil {
			res, err = s.await(f, cmd)
		}
		// Publish live messages only once their codes are in the log, so a
		// reader never sees a reason that a blocking query has not seen.
		s.liveReasons.Store(live)
		if err != nil {
			log.Warn("commit plan failed", "err", err)
			// Retry after a pause rather than spinning if raft is unhappy.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if res.Skipped > 0 {
			log.Debug("plan partly stale", "placed", res.Placed, "preempted", res.Preempted, "skipped", res.Skipped)
			continue
		}
		if res.Preempted > 0 {
			log.Info("preempting", "jobs", res.Preempted, "grace", s.cfg.Sched.PreemptGrace)
		}
		if f.Index() == snap.Index+1 {
			// Nothing came between the pass's snapshot and its plan.
			ownCommit = f.Index()
		}
	}
}

// recheckAfter is how long after a pass at now the next one should run if
// nothing changes meanwhile: when the plan's earliest future reservation
// falls due, or after interval, whichever is sooner; ok is false when the
// plan left no job pending. Without it a plan would stand until some write
// came: a reserved job whose predicted start passed would keep quoting it,
// and a preemption that waits for a running job's predicted end would never
// be reconsidered when that job overruns.
func recheckAfter(plan *sched.Plan, now time.Time, interval time.Duration) (time.Duration, bool) {
	if len(plan.Reasons) == 0 && len(plan.Tails) == 0 {
		return 0, false
	}
	d := interval
	for _, r := range plan.Reservations {
		if until := r.Start.Sub(now); until > 0 && until < d {
			d = until
		}
	}
	return d, true
}

// passPacing is how many times its own duration the scheduler waits after a
// pass before the next (see scheduleLoop).
const passPacing = 4

// verifyPlan re-checks a plan against the latest state (optimistic
// concurrency, DESIGN.md rule 4): a job is committed only if it is still
// pending and all its placements still fit; otherwise it is left for the
// next pass. A preemption is committed only if its victim still runs the
// allocations the plan names and is not being stopped already, and its
// preemptor still waits; victims get grace to checkpoint. It also turns
// placements into allocations and keeps only the pending reasons whose
// code changed. Messages carry live numbers ("2 fit now") that change with
// every pass; logging them would write every pending
// job into the log on every pass. The leader serves the latest message from
// memory instead (LiveReason), and the log keeps the code and the message
// from when the code last changed.
func verifyPlan(latest *state.Snapshot, plan *sched.Plan, term uint64, now time.Time, grace time.Duration) *fsm.CommitPlan {
	cmd := &fsm.CommitPlan{Time: now, Term: term}
	var free map[string]*sched.NodeFree
	for start := 0; start < len(plan.Placements); {
		end := start
		for end < len(plan.Placements) && plan.Placements[end].JobID == plan.Placements[start].JobID {
			end++
		}
		ps := plan.Placements[start:end]
		start = end
		job := latest.Job(ps[0].JobID)
		// A gang with a minimum may start with fewer than all its tasks.
		if job == nil || job.State != model.JobPending || len(ps) < job.GangSize() || len(ps) > job.TaskCount() {
			continue
		}
		if free == nil {
			free = sched.ComputeFree(latest.Nodes(), latest.LiveAllocs())
		}
		if err := sched.VerifyJob(free, ps); err != nil {
			continue
		}
		pj := fsm.PlannedJob{JobID: job.ID, Allocs: make([]model.Allocation, 0, len(ps))}
		limit := enforcedWalltime(latest, job)
		for _, p := range ps {
			a := allocFor(job, p)
			a.TaskCount = len(ps) // the tasks this attempt starts with
			a.Walltime = limit
			pj.Allocs = append(pj.Allocs, a)
		}
		cmd.Jobs = append(cmd.Jobs, pj)
	}
	victims := map[model.JobID]bool{}
	for _, p := range plan.Preemptions {
		if victims[p.JobID] || !preemptionHolds(latest, p) {
			continue
		}
		victims[p.JobID] = true
		cmd.Preemptions = append(cmd.Preemptions, fsm.PlannedPreemption{
			JobID: p.JobID, AllocIDs: slices.Sorted(slices.Values(p.AllocIDs)), Preemptor: p.Preemptor, Reason: p.Reason, Grace: grace,
		})
	}
	for id, r := range plan.Reasons {
		if j := latest.Job(id); j != nil && j.State == model.JobPending && j.Reason.Code != r.Code {
			cmd.Reasons = append(cmd.Reasons, fsm.JobReason{JobID: id, Reason: r})
		}
	}
	sortReasons(cmd.Reasons)
	return cmd
}

// preemptionHolds reports whether a planned preemption still makes sense
// in the latest state: the victim runs exactly the allocations named (all
// of its current attempt's live ones, none already being stopped) and the
// preemptor still waits. The FSM checks the same when it applies it.
func preemptionHolds(latest *state.Snapshot, p sched.Preemption) bool {
	victim, preemptor := latest.Job(p.JobID), latest.Job(p.Preemptor)
	if victim == nil || victim.State != model.JobRunning || victim.PreemptedBy != 0 ||
		preemptor == nil || preemptor.State != model.JobPending || len(p.AllocIDs) == 0 {
		return false
	}
	named := map[string]bool{}
	for _, id := range p.AllocIDs {
		named[id] = true
	}
	live := 0
	for _, a := range latest.AllocsByJob(p.JobID) {
		if a.Attempt != victim.Attempt || a.Status.Terminal() {
			continue
		}
		if a.Desired != model.DesiredRun || !named[a.ID] {
			return false
		}
		live++
	}
	return live == len(p.AllocIDs) && live == len(named)
}

// LiveReason is the reason the leader's latest scheduling pass gave for a
// pending job, with current numbers. ok is false on followers and for jobs
// the latest pass did not see.
func (s *Server) LiveReason(id model.JobID) (r model.Reason, ok bool) {
	if !s.leading.Load() {
		return r, false
	}
	live := s.liveReasons.Load()
	if live == nil {
		return r, false
	}
	if r, ok = live.reasons[id]; ok || len(live.tails) == 0 {
		return r, ok
	}
	// A job of a tail: its class's, if it was behind the tail's After.
	j := s.store.Snapshot().Job(id)
	if j == nil || j.State != model.JobPending {
		return r, false
	}
	key, ok := classKey(j)
	if !ok {
		return r, false
	}
	t, ok := live.tails[key]
	if !ok || id < t.first || id > t.last {
		return r, false
	}
	return t.reason, true
}

// livePass is what LiveReason serves: a pass's reasons, and its tails'
// by class (a tail's jobs are its class's pending jobs with IDs from
// first to last).
type livePass struct {
	reasons map[model.JobID]model.Reason
	tails   map[string]liveTail
}

type liveTail struct {
	first, last model.JobID
	reason      model.Reason
}

// enforcedWalltime is the limit a job's tasks are held to
// (model.Queue.WalltimeLimit).
func enforcedWalltime(latest *state.Snapshot, job *model.Job) time.Duration {
	name := job.Queue
	if name == "" {
		name = model.DefaultQueue
	}
	return latest.Queue(name).WalltimeLimit(job.Walltime)
}

// allocFor builds the allocation for one placement, copying from the job
// everything an agent needs to run the task.
func allocFor(job *model.Job, p sched.Placement) model.Allocation {
	a := model.Allocation{
		JobID:      job.ID,
		Group:      p.Group,
		TaskIndex:  p.TaskIndex,
		Node:       p.Node,
		Resources:  p.Resources.Copy(),
		GPUIndices: append([]int(nil), p.GPUIndices...),
		Walltime:   job.Walltime,
		JobName:    job.Name,
		Owner:      job.Owner,
		TaskCount:  job.TaskCount(),
		// The scheduler charges running work to its queue, weighs it by
		// priority for preemption, and counts it against array throttles.
		Queue:       job.Queue,
		Priority:    job.Priority,
		ArrayParent: job.ArrayParent,
		ArrayIndex:  job.ArrayIndex,
	}
	for _, g := range job.Groups {
		if g.Name == p.Group {
			a.Command = append([]string(nil), g.Command...)
			a.WorkDir = g.WorkDir
			if len(g.Env) > 0 {
				a.Env = make(map[string]string, len(g.Env))
				for k, v := range g.Env {
					a.Env[k] = v
				}
			}
			break
		}
	}
	return a
}

// sortReasons orders reasons by job, keeping the entry deterministic.
func sortReasons(rs []fsm.JobReason) {
	slices.SortFunc(rs, func(a, b fsm.JobReason) int { return cmp.Compare(a.JobID, b.JobID) })
}

// reasonChanges returns the reasons of a pass whose code differs from the
// job's in the pass's snapshot: the pending jobs it scheduled (ready) and
// those held back (held). Only the scheduler changes a pending job's
// reason and it commits one plan at a time, so a code equal to the
// snapshot's is equal to the latest state's too.
func reasonChanges(snap *state.Snapshot, ready []*model.Job, held, reasons map[model.JobID]model.Reason) map[model.JobID]model.Reason {
	out := map[model.JobID]model.Reason{}
	for _, j := range ready {
		if r, ok := reasons[j.ID]; ok && r.Code != j.Reason.Code {
			out[j.ID] = r
		}
	}
	for id := range held {
		if j := snap.Job(id); j != nil && j.Reason.Code != reasons[id].Code {
			out[id] = reasons[id]
		}
	}
	return out
}

// holdBackoff splits pending jobs into those the scheduler may place now and
// those still in their retry backoff (with a reason each), and returns when
// the earliest held job becomes eligible (zero if none is held). Keeping
// them out of the snapshot keeps the backoff out of the pure scheduler.
func holdBackoff(pending []*model.Job, now time.Time) ([]*model.Job, map[model.JobID]model.Reason, time.Time) {
	ready := make([]*model.Job, 0, len(pending))
	var held map[model.JobID]model.Reason
	var wake time.Time
	for _, j := range pending {
		if !j.EligibleAt.After(now) {
			ready = append(ready, j)
			continue
		}
		if held == nil {
			held = map[model.JobID]model.Reason{}
		}
		held[j.ID] = model.Reason{Code: model.ReasonBackoff, Message: fmt.Sprintf(
			"retry %d waits out its backoff until %s (%s from now)", j.Attempt-j.Preemptions, j.EligibleAt.UTC().Format(time.TimeOnly), j.EligibleAt.Sub(now).Round(100*time.Millisecond))}
		if wake.IsZero() || j.EligibleAt.Before(wake) {
			wake = j.EligibleAt
		}
	}
	return ready, held, wake
}

// schedInput builds the scheduler's view of a state snapshot: the pending
// jobs past their retry backoff (the others are returned apart with their
// reasons, and wake is when the first becomes eligible), nodes, live
// allocations, queues, recent history and dependency states.
func schedInput(snap *state.Snapshot, now time.Time) (in *sched.Snapshot, held map[model.JobID]model.Reason, wake time.Time) {
	pending, held, wake := holdBackoff(snap.JobsInState(model.JobPending), now)
	pending = withArrayDependencies(snap, pending)
	states, names := dependencyStates(snap, pending)
	in = &sched.Snapshot{Nodes: snap.Nodes(), Allocs: snap.LiveAllocs(), Pending: pending, Queues: snap.Queues(),
		History: recentHistory(snap, historyWindow), DependencyStates: states, DependencyNames: names}
	return in, held, wake
}

// Explain says why a pending job waits, when it should start and what would
// let it start sooner (sched.Explain on the current state). Any server can
// answer; a follower's answer may lag the leader's by a moment.
func (s *Server) Explain(id model.JobID) (*sched.Explanation, error) {
	now := s.cfg.Now()
	snap := s.store.Snapshot()
	in, held, _ := schedInput(snap, now)
	if r, ok := held[id]; ok {
		return &sched.Explanation{JobID: id, Reason: r, EstimatedStart: s.store.Snapshot().Job(id).EligibleAt}, nil
	}
	e, err := sched.Explain(in, now, s.schedConfig(), id)
	if err == nil && !e.StartsNow {
		r := map[model.JobID]model.Reason{id: e.Reason}
		waitingForVictims(snap, r)
		e.Reason = r[id]
	}
	return e, err
}

// QueueStatus is quota usage and fair share per queue in snap, as the
// scheduler computes them (sched.Queues on the scheduler's input).
func (s *Server) QueueStatus(snap *state.Snapshot) []sched.QueueStatus {
	now := s.cfg.Now()
	in, _, _ := schedInput(snap, now)
	return sched.Queues(in, now, s.schedConfig())
}

// waitingForVictims gives a pending job whose preemption victims are still
// stopping the reason Preempting, naming them, where the scheduler only
// says it waits for room: once its victims are stopping, the scheduler
// sees their room as free after the grace period and reserves it for the
// job (Reserved), which hides why that room is coming.
func waitingForVictims(snap *state.Snapshot, reasons map[model.JobID]model.Reason) {
	var victims map[model.JobID][]model.JobID
	for _, j := range snap.JobsInState(model.JobRunning) {
		if j.PreemptedBy == 0 {
			continue
		}
		if r, ok := reasons[j.PreemptedBy]; ok && waitsForRoom(r.Code) {
			if victims == nil {
				victims = map[model.JobID][]model.JobID{}
			}
			victims[j.PreemptedBy] = append(victims[j.PreemptedBy], j.ID)
		}
	}
	for id, ids := range victims {
		slices.Sort(ids)
		names := make([]string, len(ids))
		for i, v := range ids {
			names[i] = v.String()
		}
		job := "job"
		if len(ids) > 1 {
			job = "jobs"
		}
		reasons[id] = model.Reason{Code: model.ReasonPreempting, Message: fmt.Sprintf(
			"waiting for preempted %s %s to stop; %s", job, strings.Join(names, ", "), reasons[id].Message)}
	}
}

func waitsForRoom(code string) bool {
	switch code {
	case model.ReasonReserved, model.ReasonResources, model.ReasonPriority, model.ReasonBackfill:
		return true
	}
	return false
}

// historyWindow bounds the finished jobs the scheduler sees (runtime
// predictions and fair-share usage decay need recent history only).
const historyWindow = 1000

// recentHistory returns up to n most recently submitted finished jobs that
// ran, by end time then ID (historyCompare), as the scheduler wants them.
func recentHistory(snap *state.Snapshot, n int) []model.FinishedJob {
	out := make([]model.FinishedJob, 0, n) // allocated once per pass (a fifth of the pass's garbage when grown)
	snap.FinishedJobs(func(j *model.Job) bool {
		if ran(j) {
			out = append(out, finishedJob(j))
		}
		return len(out) < n
	})
	slices.SortFunc(out, historyCompare)
	return out
}

// ran reports whether a finished job belongs in the history: it ran.
func ran(j *model.Job) bool { return !j.StartTime.IsZero() && !j.EndTime.IsZero() }

// finishedJob is a finished job as the scheduler's history holds it.
func finishedJob(j *model.Job) model.FinishedJob {
	return model.FinishedJob{
		ID: j.ID, Owner: j.Owner, Queue: j.Queue, Usage: j.TotalResources(),
		Requested: j.Walltime, Ran: j.EndTime.Sub(j.StartTime),
		SubmitTime: j.SubmitTime, StartTime: j.StartTime, EndTime: j.EndTime, ExitCode: j.ExitCode,
	}
}

// dependencyStates gives the state of every job a pending job depends on,
// and the names of those that are array elements (123_7), which reasons
// use. A dependency on a job that no longer exists (pruned) is absent,
// which the scheduler treats as never satisfiable.
func dependencyStates(snap *state.Snapshot, pending []*model.Job) (map[model.JobID]model.JobState, map[model.JobID]string) {
	var out map[model.JobID]model.JobState
	var names map[model.JobID]string
	for _, j := range pending {
		for _, d := range j.Dependencies {
			if out == nil {
				out = map[model.JobID]model.JobState{}
			}
			if dep := snap.Job(d.JobID); dep != nil {
				out[d.JobID] = dep.State
				if dep.ArrayParent != 0 {
					if names == nil {
						names = map[model.JobID]string{}
					}
					names[d.JobID] = dep.DisplayName()
				}
			}
		}
	}
	return out, names
}

// schedConfig is the scheduler configuration the live server runs with:
// the configured one, whose PreemptGrace is also the grace victims get
// (setDefaults), so the scheduler plans preemptors to start when their
// victims' grace ends.
func (s *Server) schedConfig() sched.Config { return s.cfg.Sched }
