package sched

import (
	"slices"
	"time"

	"github.com/durehq/dure/internal/model"
)

// scheduleDure is dure's own policy; README.md describes it. In short:
//
//  1. Gate: jobs whose dependencies are not met wait (or can never run).
//  2. Main phase: preemptors whose victims are stopping or requeued first
//     (the room is theirs); then jobs in fair order (queues by weighted
//     dominant share, then priority, owner share and submit time inside a
//     queue), jobs that would borrow quota after the others. Each
//     must fit its queue's quota (with borrowing) and the nodes (gang,
//     topology, flavors), and may not delay a reservation. The first
//     ReservationDepth jobs that do not fit get a reservation, on predicted
//     run times; the first few that cannot start now try preemption
//     (reclaiming lent quota, or lower priority in their own queue).
//  3. Backfill phase: once the reservations are made, the remaining jobs
//     by priority, jobs expected to run less than τ first, then in fair
//     order, with the set that fills the free room best first (those that
//     would borrow last), each started only if it delays no reservation.
//  4. Reasons for every job left.
func scheduleDure(s *Snapshot, now time.Time, cfg Config) *Plan {
	pl := newPlanner(s, now, cfg, !cfg.NoPredictions)
	depth := cfg.ReservationDepth
	if depth == 0 {
		depth = DefaultReservationDepth
	}
	ready := []*model.Job{} // not nil: see newFair
	for _, j := range orderJobs(s.Pending, true) {
		if pl.gate(j) {
			ready = append(ready, j)
		}
	}
	d := newDure(pl, ready)
	d.fair.buildSources(d.tree, ready)
	// Preemptors go first until they start: the room their victims free is
	// theirs. While victims stop, a preemptor's reservation is made before
	// anyone else's and it chooses no new victims; once they are requeued,
	// it is placed before anyone else (Allocation.PreemptedBy,
	// Job.PreemptedBy).
	for _, j := range ready {
		if d.pre.waiting[j.ID] != nil {
			d.consider(j, true)
			d.pre.served[j.ID] = true
		}
	}
	reserving := func() bool { return depth < 0 || len(pl.res)-pl.preemptRes < depth }
	// Jobs that would borrow quota come after every job that stays within
	// its queue's nominal quota (as in Kueue): a queue reclaiming what it
	// lent goes before the borrower, in this pass and after its victims
	// were requeued. Once a queue's next job borrows, the queue's later
	// jobs wait behind it, so its own order (priority first) holds.
	var rest, borrowers, restBorrowers []*model.Job
	parked := map[*qnode]bool{}
	for {
		src := d.fair.pick(d.tree)
		if src == nil {
			break
		}
		j := src.pop()
		if d.pre.waiting[j.ID] != nil {
			continue // considered above
		}
		if parked[src.q] || d.borrows(j, src.q) {
			parked[src.q] = true
			borrowers = append(borrowers, j)
			continue
		}
		if !reserving() {
			rest = append(rest, j)
			continue
		}
		d.consider(j, true)
	}
	for _, j := range borrowers {
		if !reserving() {
			restBorrowers = append(restBorrowers, j)
			continue
		}
		d.consider(j, true)
	}
	// Backfill, jobs that borrow last: by priority; among equals, jobs
	// expected to run less than τ first, the rest in fair order; the set
	// that fills the free room best goes first (pack.go).
	for _, js := range [][]*model.Job{rest, restBorrowers} {
		for _, j := range d.packFirst(d.backfillOrder(js)) {
			d.consider(j, false)
		}
	}
	pl.finish()
	return pl.plan
}

// backfillOrder sorts jobs by priority; among equal priorities, jobs
// expected to run less than τ (boundedSlowdownFloor) come first, shortest
// first, and the others keep their (fair) order. Very short jobs cost
// almost nothing to start and are the ones whose bounded slowdown waiting
// hurts most; the others keep the order that does not change with time,
// so backfill does not starve long jobs either.
func (d *dure) backfillOrder(jobs []*model.Job) []*model.Job {
	type keyed struct {
		j   *model.Job
		run int64 // expected run, or τ for all that run at least τ
	}
	ks := make([]keyed, len(jobs))
	for i, j := range jobs {
		ks[i] = keyed{j, min(d.pl.est.runFor(j), boundedSlowdownFloor)}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if a.j.Priority != b.j.Priority {
			return b.j.Priority - a.j.Priority
		}
		return cmpInt64(a.run, b.run)
	})
	out := make([]*model.Job, len(ks))
	for i := range ks {
		out[i] = ks[i].j
	}
	return out
}

// borrows reports whether j would take its queue above its own nominal
// quota of a key the queue's tree governs, whatever GPU flavor it gets (a
// queue without a quota for a governed key borrows all it uses). A root
// queue never borrows: it has no one to borrow from.
func (d *dure) borrows(j *model.Job, q *qnode) bool {
	if len(d.tree.keys) == 0 || q.parent == nil {
		return false
	}
	root := q
	for root.parent != nil {
		root = root.parent
	}
	for _, f := range d.flavorsFor(j, q) {
		over := false
		for k, x := range d.gangDemand(j, f) {
			if x <= 0 || root.res[k] == nil {
				continue
			}
			if r := q.res[k]; r == nil || r.used+x > r.effN {
				over = true
				break
			}
		}
		if !over {
			return false
		}
	}
	return true
}

// dure is the state of a PolicyDure pass on top of the planner.
type dure struct {
	pl       *planner
	tree     *queueTree
	fair     *fair
	arrays   *arrays
	preempts int // preemption attempts so far
	pre      *preemptor
	nodes    map[string]*model.Node // every node by name (schedulable first)
}

func newDure(pl *planner, pending []*model.Job) *dure {
	d := &dure{pl: pl, tree: newQueueTree(pl.queues), arrays: newArrays(pl.s.Allocs)}
	// Quota usage of live allocations, wherever they run (not of those being
	// stopped: their preemptor counts instead).
	nodes := make(map[string]*model.Node, len(pl.s.Nodes))
	for _, n := range pl.s.Nodes {
		if n != nil {
			if o, dup := nodes[n.Name]; !dup || n.Schedulable() && !o.Schedulable() {
				nodes[n.Name] = n
			}
		}
	}
	d.nodes = nodes
	dem := demand{}
	for _, a := range pl.s.Allocs {
		// A job being stopped no longer counts.
		if a == nil || a.Status.Terminal() || a.Desired == model.DesiredStop || len(d.tree.keys) == 0 {
			continue
		}
		clear(dem)
		d.tree.demandOf(&a.Resources, 1, nodes[a.Node], dem)
		d.tree.charge(d.tree.node(a.Queue), dem, 1)
	}
	var capacity usage
	for i := range pl.p.nodes {
		nd := &pl.p.nodes[i]
		capacity[0] += float64(nd.capCPU)
		capacity[1] += float64(nd.capMem)
		capacity[2] += float64(nd.capGPU)
	}
	d.fair = newFair(pl.s, pl.nowN, pl.cfg, d.tree, capacity, pending, pl.history)
	d.pre = newPreemptor(d, pending)
	return d
}

// maxPreemptAttempts bounds the jobs per pass that look for victims (the
// first ones in fair order that cannot start).
const maxPreemptAttempts = 8

// consider tries to start j now; failing that, in the main phase, to make
// room by preemption or to reserve its start.
func (d *dure) consider(j *model.Job, main bool) {
	pl := d.pl
	if invalidJob(j) != "" {
		pl.leave(j, nil)
		return
	}
	if why := d.arrays.throttled(j); why != "" {
		pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonArrayThrottle, Message: why}
		return
	}
	q := d.tree.node(j.Queue)
	w := pl.est.runFor(j)
	flavors := d.flavorsFor(j, q)
	var quotaMsg string
	var blocker model.JobID
	var roomy []string // flavors with quota room
	for _, f := range flavors {
		need := d.gangDemand(j, f)
		if ok, k := d.tree.admits(q, need); !ok {
			if quotaMsg == "" {
				quotaMsg = d.tree.blockMessage(q, k, need[k])
			}
			continue
		}
		roomy = append(roomy, f)
		k, b := pl.place(j, placeOpts{flavor: f}, w)
		if k == 0 {
			if blocker == 0 {
				blocker = b
			}
			continue
		}
		actual := d.tentDemand()
		if ok, key := d.tree.admits(q, actual); !ok {
			pl.p.undo()
			if quotaMsg == "" {
				quotaMsg = d.tree.blockMessage(q, key, actual[key])
			}
			continue
		}
		d.start(j, q, actual, w)
		return
	}
	// While jobs are being stopped for it, it keeps their room; it
	// chooses no new victims before they have stopped, even if it would
	// not fit then (the cluster changed, or another preemptor came first):
	// then it goes first and may choose again.
	leave := pl.leave
	if e := d.pre.waiting[j.ID]; e != nil && len(e.stopping) > 0 {
		if d.pre.wait(j, q, flavors, w, e.stopping) {
			return
		}
		note := "; " + d.pre.waitMessage(e.stopping) + ", which will not be enough"
		leave = func(j *model.Job, wrap func(model.Reason) model.Reason) {
			pl.leave(j, func(base model.Reason) model.Reason {
				if wrap != nil {
					base = wrap(base)
				}
				base.Message += note
				return base
			})
		}
	} else if main && !pl.cfg.NoPreemption && d.preempts < maxPreemptAttempts {
		if d.pre.try(j, q, flavors, w) {
			return
		}
	}
	if len(roomy) == 0 {
		leave(j, func(model.Reason) model.Reason {
			return model.Reason{Code: model.ReasonQuota, Message: quotaMsg}
		})
		return
	}
	depth := pl.cfg.ReservationDepth
	if depth == 0 {
		depth = DefaultReservationDepth
	}
	if main && (depth < 0 || len(pl.res)-pl.preemptRes < depth) {
		if r := d.reserveBest(j, roomy, w); r != nil {
			wrap := pl.reservedWrap(r)
			if blocked := pl.blockedWrap(blocker); blocked != nil {
				// It fits now but for an earlier reservation: say so,
				// rather than what the final state's free room suggests.
				wrap = func(base model.Reason) model.Reason { return pl.reservedWrap(r)(blocked(base)) }
			}
			leave(j, wrap)
			return
		}
	}
	leave(j, pl.blockedWrap(blocker))
}

// flavorsFor lists the GPU flavors to try for j, in order; [""] means any
// node.
func (d *dure) flavorsFor(j *model.Job, q *qnode) []string {
	gpus := false
	want := ""
	for gi := range j.Groups {
		if j.Groups[gi].Resources.GPUs > 0 {
			gpus = true
			if f := j.Groups[gi].Constraints[FlavorLabel("gpu")]; f != "" {
				want = f
			}
		}
	}
	fs := d.tree.gpuFlavors(q)
	if !gpus || len(fs) == 0 {
		return []string{""}
	}
	if want != "" {
		if slices.Contains(fs, want) {
			return []string{want}
		}
		return []string{want} // not in the queue's quotas: admits() says so
	}
	return fs
}

// gangDemand is the quota demand of j's gang with GPUs of flavor f.
func (d *dure) gangDemand(j *model.Job, f string) demand {
	dem := demand{}
	left := j.GangSize()
	for gi := range j.Groups {
		g := &j.Groups[gi]
		n := int64(min(g.Count, left))
		left -= int(n)
		d.tree.demandOf(&g.Resources, n, nil, dem)
		if f != "" && g.Resources.GPUs > 0 {
			dem["gpu/"+f] += g.Resources.GPUs * n
		}
	}
	return dem
}

// tentDemand is the quota demand of the tentative placement, node by node.
func (d *dure) tentDemand() demand {
	dem := demand{}
	p := d.pl.p
	for _, tp := range p.tent {
		d.tree.demandOf(&tp.shape.req, 1, p.nodes[tp.node].node, dem)
	}
	return dem
}

// start commits j's tentative placement and accounts for it.
func (d *dure) start(j *model.Job, q *qnode, dem demand, w int64) {
	var u usage
	for _, tp := range d.pl.p.tent {
		x := usageOf(&tp.shape.req, 1)
		for r := 0; r < 3; r++ {
			u[r] += x[r]
		}
	}
	d.pl.commit(j, w)
	d.tree.charge(q, dem, 1)
	d.fair.started(q, j.Owner, &u)
	if j.ArrayParent != 0 {
		d.arrays.add(j.ArrayParent, j.ID)
	}
}

// reserveBest reserves j's earliest start over the flavors with quota room.
func (d *dure) reserveBest(j *model.Job, flavors []string, w int64) *resv {
	pl := d.pl
	var best *pass
	var bestAt, bestEnd int64
	for _, f := range flavors {
		fp, at, end, ok := pl.findStart(j, placeOpts{flavor: f}, w)
		if ok && (best == nil || at < bestAt) {
			best, bestAt, bestEnd = fp, at, end
		}
	}
	if best == nil {
		return nil
	}
	return pl.record(best, j, bestAt, bestEnd)
}
