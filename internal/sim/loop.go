package sim

import (
	"fmt"
	"sort"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
)

// simulator is the state of one Run: the virtual cluster, the jobs and the
// event queue. Only its methods touch it.
type simulator struct {
	opt     Options
	trace   *Trace
	base    time.Time // virtual time origin: trace start
	nodes   []*model.Node
	nodeIdx map[string]int
	free    []model.Resources // per node, what no live allocation holds
	gpuSlot []map[int]int     // per node: GPU device index → slot in gpuUsed
	gpuUsed [][]bool
	merge   bool // one-node machine: SWF processors become one task

	jobs    []jobState
	arrival int // next job to arrive, in submit order
	pending []*model.Job
	pendIdx []int // parallel to pending: index into jobs
	live    []*model.Allocation
	liveIdx map[*model.Allocation]int
	events  eventHeap
	history []model.FinishedJob
	window  int

	primary    string
	busy       float64
	queueNames []string
	queueOf    map[string]int
	busyQ      []float64 // per queue: primary resource held now
	contended  []float64 // per queue: primary resource·s held while jobs waited
	lastT      time.Duration

	res *Result
	// schedule is sched.Schedule; tests of plan checking substitute a
	// scheduler that returns impossible plans.
	schedule func(*sched.Snapshot, time.Time, sched.Config) *sched.Plan
}

// Run simulates the trace on the cluster with the real scheduler and returns
// what happened. It fails if the cluster is missing, a plan cannot be
// applied (ErrPlanInvalid) or the scheduler goes round in circles
// (ErrNoProgress).
func Run(t *Trace, opt Options) (*Result, error) {
	return run(t, opt, new(sched.Scratch).Schedule)
}

func run(t *Trace, opt Options, schedule func(*sched.Snapshot, time.Time, sched.Config) *sched.Plan) (*Result, error) {
	nodes := opt.Nodes
	if nodes == nil {
		nodes = t.Nodes
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%s: the trace describes no machine; give a cluster (dure simulate --nodes)", t.Name)
	}
	s := &simulator{
		opt: opt, trace: t, base: t.Start, nodes: nodes,
		nodeIdx:  make(map[string]int, len(nodes)),
		free:     make([]model.Resources, len(nodes)),
		gpuSlot:  make([]map[int]int, len(nodes)),
		gpuUsed:  make([][]bool, len(nodes)),
		merge:    len(nodes) == 1,
		liveIdx:  map[*model.Allocation]int{},
		window:   opt.HistoryWindow,
		queueOf:  map[string]int{},
		schedule: schedule,
	}
	if s.window <= 0 {
		s.window = DefaultHistoryWindow
	}
	var capacity model.Resources
	for i, n := range nodes {
		if _, dup := s.nodeIdx[n.Name]; dup {
			return nil, fmt.Errorf("cluster: node name %q used twice", n.Name)
		}
		s.nodeIdx[n.Name] = i
		s.free[i] = n.Capacity.Copy()
		if len(n.GPUs) > 0 {
			s.gpuSlot[i] = make(map[int]int, len(n.GPUs))
			for k, g := range n.GPUs {
				s.gpuSlot[i][g.Index] = k
			}
			s.gpuUsed[i] = make([]bool, len(n.GPUs))
		}
		if n.Schedulable() {
			capacity = capacity.Add(n.Capacity)
		}
	}
	s.res = &Result{
		Trace: t.Name, Policy: policyOf(opt.Config), Nodes: len(nodes), Capacity: capacity,
		Cluster: DescribeCluster(nodes),
		Start:   t.Start, Dropped: map[string]int{},
	}
	for k, v := range t.Dropped {
		s.res.Dropped[k] = v
	}
	s.primary = "cpu"
	if capacity.GPUs > 0 {
		for i := range t.Jobs {
			if t.Jobs[i].Request.PerTask.GPUs > 0 {
				s.primary = "gpu"
				break
			}
		}
	}
	s.res.Primary = s.primary
	s.admit()
	for _, q := range opt.Queues {
		s.queueIndex(q.Name)
	}
	if err := s.loop(); err != nil {
		return nil, err
	}
	s.finishResult(capacity)
	return s.res, nil
}

func policyOf(c sched.Config) sched.Policy {
	if c.Policy == "" {
		return sched.PolicyDure
	}
	return c.Policy
}

// admit builds the simulator's job records, leaving out jobs that could not
// run even on the empty cluster (they would wait forever and, under FIFO,
// block everything behind them).
func (s *simulator) admit() {
	fits := map[string]bool{}
	s.jobs = make([]jobState, 0, len(s.trace.Jobs))
	for i := range s.trace.Jobs {
		tj := &s.trace.Jobs[i]
		mj := tj.Request.modelJob(model.JobID(len(s.jobs)+1), s.base.Add(tj.Submit), s.merge)
		g := &mj.Groups[0]
		gang := mj.GangSize() // a partial gang may start with its minimum
		key := fmt.Sprintf("%d|%v|%v", gang, g.Resources, g.Constraints)
		ok, seen := fits[key]
		if !seen {
			ok = fitsEmpty(s.nodes, g, gang)
			fits[key] = ok
		}
		if !ok {
			s.res.Dropped["larger than the cluster"]++
			continue
		}
		run := tj.Runtime
		killed := false
		if limit := s.limitOf(tj.Request.Walltime, mj.Queue); !s.opt.RunPastWalltime && limit > 0 && run > limit {
			run, killed = limit, true
		}
		s.jobs = append(s.jobs, jobState{
			tj: tj, mj: mj, run: run, killed: killed, pending: -1,
			size: tj.Request.Total(), queueIndex: s.queueIndex(tj.Request.Queue),
		})
	}
}

// limitOf is the walltime a job is stopped at, as a dure server holds it
// (model.Queue.WalltimeLimit).
func (s *simulator) limitOf(walltime time.Duration, queue string) time.Duration {
	queue = queueName(queue)
	for _, q := range s.opt.Queues {
		if q.Name == queue {
			return q.WalltimeLimit(walltime)
		}
	}
	return walltime
}

func (s *simulator) queueIndex(name string) int {
	if name == "" {
		name = model.DefaultQueue
	}
	if i, ok := s.queueOf[name]; ok {
		return i
	}
	s.queueOf[name] = len(s.queueNames)
	s.queueNames = append(s.queueNames, name)
	s.busyQ = append(s.busyQ, 0)
	s.contended = append(s.contended, 0)
	return len(s.queueNames) - 1
}

// fitsEmpty reports whether count of a group's tasks fit on the empty
// cluster, counting per node how many tasks its capacity holds.
func fitsEmpty(nodes []*model.Node, g *model.TaskGroup, count int) bool {
	need := g.Resources
	room := 0
	for _, n := range nodes {
		if !n.Schedulable() || !hasLabels(n, g.Constraints) {
			continue
		}
		capRes := n.Capacity
		capRes.GPUs = min(capRes.GPUs, int64(len(n.GPUs))) // a GPU needs a device index
		k := int64(1 << 40)
		per := func(have, want int64) {
			if want > 0 {
				k = min(k, have/want)
			}
		}
		per(capRes.MilliCPU, need.MilliCPU)
		per(capRes.MemoryBytes, need.MemoryBytes)
		per(capRes.GPUs, need.GPUs)
		per(capRes.ScratchBytes, need.ScratchBytes)
		for name, v := range need.Custom {
			per(capRes.Custom[name], v)
		}
		room += int(min(k, int64(count)))
		if room >= count {
			return true
		}
	}
	return room >= count
}

func hasLabels(n *model.Node, want map[string]string) bool {
	for k, v := range want {
		if n.Labels[k] != v {
			return false
		}
	}
	return true
}

// maxIdleWakes bounds consecutive wake-up passes with no arrival or end
// between them.
const maxIdleWakes = 16

// loop advances virtual time from event to event until nothing is left.
func (s *simulator) loop() error {
	var wake time.Duration
	hasWake := false
	idleWakes := 0
	for {
		now, ok := s.nextInstant(wake, hasWake)
		if !ok {
			break
		}
		s.account(now)
		happened := false // an end or an arrival, not only a wake-up
		for t, ok := s.events.next(); ok && t == now; t, ok = s.events.next() {
			s.handle(s.events.pop(), now)
			happened = true
		}
		for s.arrival < len(s.jobs) && s.jobs[s.arrival].tj.Submit == now {
			s.enqueue(s.arrival)
			s.arrival++
			happened = true
		}
		if hasWake && wake <= now {
			hasWake = false
		}
		if happened {
			idleWakes = 0
		} else {
			idleWakes++
		}
		for pass := 0; ; pass++ {
			if pass == maxPassesPerInstant {
				return fmt.Errorf("%w: %d passes at t=%s and the scheduler still preempts", ErrPlanInvalid, pass, now)
			}
			again, w, err := s.pass(now)
			if err != nil {
				return err
			}
			// Wake-ups that start nothing are ignored after a few in a row
			// until something real happens: a scheduler that keeps
			// promising starts it never makes must not spin the clock.
			wake, hasWake = w, w > now && idleWakes < maxIdleWakes
			if again {
				idleWakes = 0
				continue
			}
			break
		}
	}
	for _, i := range s.pendIdx {
		s.res.NeverStarted = append(s.res.NeverStarted, s.jobs[i].mj.ID)
	}
	sort.Slice(s.res.NeverStarted, func(a, b int) bool { return s.res.NeverStarted[a] < s.res.NeverStarted[b] })
	return nil
}

// nextInstant is the earliest of the next arrival, the next event and the
// wake-up the last plan asked for (its earliest reservation), if any jobs
// wait for it.
func (s *simulator) nextInstant(wake time.Duration, hasWake bool) (time.Duration, bool) {
	var best time.Duration
	ok := false
	if s.arrival < len(s.jobs) {
		best, ok = s.jobs[s.arrival].tj.Submit, true
	}
	if t, has := s.events.next(); has && (!ok || t < best) {
		best, ok = t, true
	}
	if hasWake && len(s.pending) > 0 && (!ok || wake < best) {
		best, ok = wake, true
	}
	return best, ok
}

// account adds the time since the last instant to the per-queue usage
// measured under contention.
func (s *simulator) account(now time.Duration) {
	if dt := (now - s.lastT).Seconds(); dt > 0 && len(s.pending) > 0 {
		s.res.Contention += now - s.lastT
		for q, b := range s.busyQ {
			s.contended[q] += b * dt
		}
	}
	s.lastT = now
}

// pass runs the scheduler once at now and applies its plan. again reports
// that jobs were stopped at once for preemptors, so another pass at the same
// instant should place them; wake is the earliest reservation start.
func (s *simulator) pass(now time.Duration) (again bool, wake time.Duration, err error) {
	if len(s.pending) == 0 {
		return false, 0, nil
	}
	hist := s.history
	if len(hist) > s.window {
		hist = hist[len(hist)-s.window:]
	}
	snap := &sched.Snapshot{Nodes: s.nodes, Allocs: s.live, Pending: s.pending, Queues: s.opt.Queues, History: hist}
	var t0 time.Time
	if s.opt.Clock != nil {
		t0 = s.opt.Clock()
	}
	plan := s.schedule(snap, s.base.Add(now), s.opt.Config)
	if s.opt.Clock != nil {
		s.res.SchedTime += s.opt.Clock().Sub(t0)
	}
	s.res.Passes++
	if err := s.applyPlacements(plan.Placements, now); err != nil {
		return false, 0, fmt.Errorf("t=%s (%s): %w", now, s.base.Add(now).Format(time.DateTime), err)
	}
	for _, p := range plan.Preemptions {
		stoppedNow, err := s.preempt(p, now)
		if err != nil {
			return false, 0, fmt.Errorf("t=%s: %w", now, err)
		}
		again = again || stoppedNow
	}
	wake = -1
	for _, r := range plan.Reservations {
		if at := r.Start.Sub(s.base); at > now && (wake < 0 || at < wake) {
			wake = at
		}
	}
	return again, wake, nil
}

// applyPlacements checks the plan against the virtual cluster and starts
// every job it places: all its tasks now, ending at now + its runtime.
func (s *simulator) applyPlacements(ps []sched.Placement, now time.Duration) error {
	started := map[model.JobID]bool{}
	for i := 0; i < len(ps); {
		id := ps[i].JobID
		k := i
		for k < len(ps) && ps[k].JobID == id {
			k++
		}
		if started[id] {
			return fmt.Errorf("%w: job %d's placements are not contiguous", ErrPlanInvalid, id)
		}
		started[id] = true
		if err := s.start(id, ps[i:k], now); err != nil {
			return err
		}
		i = k
	}
	return nil
}

func (s *simulator) jobIndex(id model.JobID) (int, bool) {
	i := int(id) - 1
	return i, i >= 0 && i < len(s.jobs)
}

func (s *simulator) start(id model.JobID, ps []sched.Placement, now time.Duration) error {
	ji, ok := s.jobIndex(id)
	if !ok || s.jobs[ji].pending < 0 {
		return fmt.Errorf("%w: placement for job %d, which is not pending", ErrPlanInvalid, id)
	}
	js := &s.jobs[ji]
	mj := js.mj
	// A gang starts whole, or with at least its minimum (MinTasks).
	tasks, gang := mj.TaskCount(), mj.GangSize()
	if len(ps) < gang || len(ps) > tasks {
		want := fmt.Sprintf("its %d tasks", tasks)
		if gang < tasks {
			want = fmt.Sprintf("%d to %d tasks", gang, tasks)
		}
		placed := fmt.Sprintf("%d tasks", len(ps))
		if len(ps) == 1 {
			placed = "1 task"
		}
		return fmt.Errorf("%w: job %d placed with %s, want %s (a gang starts all together)", ErrPlanInvalid, id, placed, want)
	}
	js.attempt++
	seen := make(map[int]bool, len(ps))
	allocs := make([]*model.Allocation, 0, len(ps))
	var held model.Resources
	for _, p := range ps {
		if p.TaskIndex < 0 || p.TaskIndex >= tasks || seen[p.TaskIndex] {
			return fmt.Errorf("%w: job %d: task index %d repeated or out of range", ErrPlanInvalid, id, p.TaskIndex)
		}
		seen[p.TaskIndex] = true
		req := groupOf(mj, p.Group)
		if req == nil {
			return fmt.Errorf("%w: job %d has no group %q", ErrPlanInvalid, id, p.Group)
		}
		if !req.Resources.Fits(p.Resources) || !p.Resources.Fits(req.Resources) {
			return fmt.Errorf("%w: job %d task %d placed with %s, its group asks %s", ErrPlanInvalid, id, p.TaskIndex, p.Resources, req.Resources)
		}
		if err := s.take(p); err != nil {
			return fmt.Errorf("%w: job %d task %d: %v", ErrPlanInvalid, id, p.TaskIndex, err)
		}
		held = held.Add(p.Resources)
		a := &model.Allocation{
			ID: model.AllocID(id, p.TaskIndex, js.attempt), JobID: id, Group: p.Group,
			TaskIndex: p.TaskIndex, Attempt: js.attempt, Node: p.Node,
			Resources: p.Resources, GPUIndices: p.GPUIndices,
			Walltime: mj.Walltime, JobName: mj.Name, Owner: mj.Owner, TaskCount: len(ps),
			Queue: mj.Queue, Priority: mj.Priority,
			Desired: model.DesiredRun, Status: model.AllocRunning,
			CreatedAt: s.base.Add(now), StartedAt: s.base.Add(now),
		}
		s.liveIdx[a] = len(s.live)
		s.live = append(s.live, a)
		allocs = append(allocs, a)
	}
	s.dequeue(ji)
	mj.PreemptedBy = 0 // placed again: no longer waits behind its preemptor
	js.allocs = allocs
	js.start = now
	js.held = held
	amt := amount(js.held, s.primary)
	s.setBusy(now, s.busy+amt)
	s.busyQ[js.queueIndex] += amt
	s.events.push(event{at: now + js.run, kind: evEnd, job: ji, attempt: js.attempt})
	return nil
}

func groupOf(j *model.Job, name string) *model.TaskGroup {
	for i := range j.Groups {
		if j.Groups[i].Name == name {
			return &j.Groups[i]
		}
	}
	return nil
}

// take subtracts one placement from its node, checking it fits.
func (s *simulator) take(p sched.Placement) error {
	ni, ok := s.nodeIdx[p.Node]
	if !ok {
		return fmt.Errorf("unknown node %q", p.Node)
	}
	if !s.nodes[ni].Schedulable() {
		return fmt.Errorf("node %s is not schedulable", p.Node)
	}
	if short := s.free[ni].Shortfall(p.Resources); short != "" {
		return fmt.Errorf("node %s over-committed in %s: free %s, placed %s", p.Node, short, s.free[ni], p.Resources)
	}
	if int64(len(p.GPUIndices)) != p.Resources.GPUs {
		return fmt.Errorf("%d GPU indices for %d GPUs", len(p.GPUIndices), p.Resources.GPUs)
	}
	for k, gi := range p.GPUIndices {
		slot, ok := s.gpuSlot[ni][gi]
		if !ok {
			return fmt.Errorf("node %s has no GPU %d", p.Node, gi)
		}
		if s.gpuUsed[ni][slot] {
			for _, undo := range p.GPUIndices[:k] {
				s.gpuUsed[ni][s.gpuSlot[ni][undo]] = false
			}
			return fmt.Errorf("node %s GPU %d already in use", p.Node, gi)
		}
		s.gpuUsed[ni][slot] = true
	}
	s.free[ni] = s.free[ni].Sub(p.Resources)
	return nil
}

// release gives a job's allocations back to their nodes.
func (s *simulator) release(js *jobState) {
	for _, a := range js.allocs {
		ni := s.nodeIdx[a.Node]
		s.free[ni] = s.free[ni].Add(a.Resources)
		for _, gi := range a.GPUIndices {
			s.gpuUsed[ni][s.gpuSlot[ni][gi]] = false
		}
		i := s.liveIdx[a]
		last := s.live[len(s.live)-1]
		s.live[i] = last
		s.liveIdx[last] = i
		s.live[len(s.live)-1] = nil
		s.live = s.live[:len(s.live)-1]
		delete(s.liveIdx, a)
	}
	js.allocs = nil
}

func (s *simulator) enqueue(ji int) {
	js := &s.jobs[ji]
	js.pending = len(s.pending)
	s.pending = append(s.pending, js.mj)
	s.pendIdx = append(s.pendIdx, ji)
}

func (s *simulator) dequeue(ji int) {
	js := &s.jobs[ji]
	i, last := js.pending, len(s.pending)-1
	s.pending[i], s.pendIdx[i] = s.pending[last], s.pendIdx[last]
	s.jobs[s.pendIdx[i]].pending = i
	s.pending[last] = nil
	s.pending, s.pendIdx = s.pending[:last], s.pendIdx[:last]
	js.pending = -1
}

func (s *simulator) setBusy(now time.Duration, busy float64) {
	s.busy = busy
	if n := len(s.res.Usage); n > 0 && s.res.Usage[n-1].At == now {
		s.res.Usage[n-1].Busy = busy
		return
	}
	s.res.Usage = append(s.res.Usage, UsagePoint{At: now, Busy: busy})
}

// stopRunning ends a job's current attempt at now.
func (s *simulator) stopRunning(js *jobState, now time.Duration) {
	s.release(js)
	amt := amount(js.held, s.primary)
	s.setBusy(now, s.busy-amt)
	s.busyQ[js.queueIndex] -= amt
	js.stopping = false
}

// handle processes one event at now.
func (s *simulator) handle(e event, now time.Duration) {
	js := &s.jobs[e.job]
	if js.done || e.attempt != js.attempt || js.allocs == nil {
		return // stale: the attempt it was for was preempted
	}
	switch e.kind {
	case evEnd:
		s.stopRunning(js, now)
		js.done = true
		r := JobResult{
			ID: js.mj.ID, Owner: js.mj.Owner, Queue: queueName(js.mj.Queue),
			Submit: js.tj.Submit, Start: js.start, End: now, Run: now - js.start,
			Killed: js.killed, Preempted: js.preempted, Size: js.held,
		}
		s.res.Jobs = append(s.res.Jobs, r)
		exit := 0
		if js.killed {
			exit = 1
		}
		s.history = append(s.history, model.FinishedJob{
			ID: r.ID, Owner: r.Owner, Queue: js.mj.Queue, Usage: js.held,
			Requested: js.mj.Walltime, Ran: r.Run,
			SubmitTime: s.base.Add(r.Submit), StartTime: s.base.Add(r.Start), EndTime: s.base.Add(r.End),
			ExitCode: exit,
		})
		if len(s.history) >= 2*s.window {
			s.history = append(s.history[:0], s.history[len(s.history)-s.window:]...)
		}
	case evStop:
		if js.stopping {
			by := js.allocs[0].PreemptedBy
			s.stopRunning(js, now)
			s.requeue(e.job, by)
		}
	}
}

// preempt stops a running job for a preemptor: at once, or after the grace
// period. It reports whether the job stopped now.
func (s *simulator) preempt(p sched.Preemption, now time.Duration) (bool, error) {
	ji, ok := s.jobIndex(p.JobID)
	if !ok || s.jobs[ji].allocs == nil || s.jobs[ji].done {
		return false, fmt.Errorf("%w: preemption of job %d, which is not running", ErrPlanInvalid, p.JobID)
	}
	js := &s.jobs[ji]
	if js.stopping {
		return false, nil // already on its way out
	}
	s.res.Preemptions++
	js.preempted++
	if js.preempted > maxPreemptionsPerJob {
		return false, fmt.Errorf("%w: job %d preempted %d times (last for job %d): the scheduler keeps starting and stopping it", ErrNoProgress, p.JobID, js.preempted, p.Preemptor)
	}
	s.res.LostWork += amount(js.held, s.primary) * (now - js.start).Seconds()
	if s.opt.PreemptionGrace <= 0 {
		s.stopRunning(js, now)
		s.requeue(ji, p.Preemptor)
		return true, nil
	}
	js.stopping = true
	for _, a := range js.allocs {
		a.Desired, a.DesiredReason, a.PreemptedBy = model.DesiredStop, "preempted for job "+p.Preemptor.String(), p.Preemptor
	}
	s.events.push(event{at: now + s.opt.PreemptionGrace, kind: evStop, job: ji, attempt: js.attempt})
	return false, nil
}

// requeue puts a job stopped for preemptor back in the queue with its
// original submission time, marked as preempted by it, as the server does;
// its work so far is lost.
func (s *simulator) requeue(ji int, preemptor model.JobID) {
	js := &s.jobs[ji]
	mj := js.tj.Request.modelJob(js.mj.ID, js.mj.SubmitTime, s.merge)
	mj.Attempt = js.attempt
	mj.PreemptedBy = preemptor
	mj.Reason = model.Reason{Code: model.ReasonPreempted, Message: "stopped to make room for another job"}
	js.mj = mj
	s.enqueue(ji)
}

func queueName(q string) string {
	if q == "" {
		return model.DefaultQueue
	}
	return q
}
