package sched

import (
	"sort"
	"time"

	"github.com/durehq/dure/internal/model"
)

// overdueGrace is how soon a job that has run past its expected end is
// assumed to end (the agent kills it at its walltime; a prediction that was
// exceeded is corrected before it gets here).
const overdueGrace = int64(time.Minute)

// maxWindow caps any duration the planner works with (100 years), so that
// time arithmetic never overflows.
const maxWindow = int64(100 * 365 * 24 * time.Hour)

// maxReserveTries bounds the candidate start times at which a reservation
// search tries a full placement (the cheap aggregate test runs at all).
const maxReserveTries = 64

// planner is one scheduling pass with time: the present state (a pass), the
// timeline of expected ends and reservations, and the plan being built.
type planner struct {
	s    *Snapshot
	now  time.Time
	nowN int64
	cfg  Config
	p    *pass
	tl   *timeline
	plan *Plan

	byName map[string]int32 // schedulable node name -> index
	queues map[string]*model.Queue
	est    *estimator
	res    []*resv
	// preemptRes counts the reservations of preemptors (not limited by
	// the reservation depth).
	preemptRes int
	// history visits Snapshot.History newest first.
	history historyOrder
	// later holds what to do with the reasons of jobs left pending: the
	// base reason comes from the analysis of the final state (reasons.go).
	later []laterReason
	// avoidFail is, per shape, the (end, tasks) pairs at which placing
	// around reservations failed in this pass (placeAvoiding's memo).
	avoidFail map[*shape][][2]int64
	// blockedWraps: the reason wrap for jobs blocked by each reservation.
	blockedWraps map[model.JobID]func(model.Reason) model.Reason
	// baseKeys numbers the distinct baseKeys of jobs left pending;
	// baseJobs[i] is the first job left with key i.
	baseKeys          map[baseKeyFast]int32
	baseJobs          []*model.Job
	names, topologies stringIDs // for baseKeyFast
	warmed            int       // what warm read (kept, so that it reads)
}

type laterReason struct {
	job  *model.Job
	id   model.JobID
	key  int32                           // in baseJobs; -1: analysed on its own
	wrap func(model.Reason) model.Reason // nil: the analysis as is
}

// resv is a reservation made in this pass.
type resv struct {
	job        *model.Job
	start, end int64
	nodes      []int32 // distinct, ascending
}

// newPlanner starts a pass; predict: runtime predictions; pendingLater:
// the pending jobs' owners get theirs later (estimator.recentFor).
func newPlanner(s *Snapshot, now time.Time, cfg Config, predict, pendingLater bool) *planner {
	return newPlannerIn(&Scratch{}, s, now, cfg, predict, pendingLater)
}

// newPlannerIn is newPlanner with its memory taken from sc.
func newPlannerIn(sc *Scratch, s *Snapshot, now time.Time, cfg Config, predict, pendingLater bool) *planner {
	pl := &planner{
		s: s, now: now, nowN: now.UnixNano(), cfg: cfg,
		p:         newPassIn(sc, s.Nodes, s.Allocs),
		plan:      &Plan{Reasons: make(map[model.JobID]model.Reason, len(s.Pending)), Placements: make([]Placement, 0, sc.placements)},
		avoidFail: map[*shape][][2]int64{},
		later:     grab(&sc.later, len(s.Pending))[:0],
	}
	pl.byName = pl.p.byName
	pl.queues = uniqueQueues(s.Queues)
	if predict || cfg.policy() == PolicyDure {
		pl.history = newHistoryOrder(s.History)
	}
	pl.est = newEstimatorFor(s, now, cfg, pl.queues, predict, pl.history, !pendingLater)
	pl.startTimeline(pl.est.allocEndAt)
	return pl
}

// startTimeline builds the timeline from the live allocations, each
// expected to end at end(k, a) (a is the k-th allocation).
func (pl *planner) startTimeline(end func(k int, a *model.Allocation) int64) {
	pl.tl = newTimeline(pl.p.sc, pl.nowN, len(pl.p.nodes), pl.s.Allocs, pl.p.allocNode, end)
}

// recycle gives the pass's memory back to its Scratch once the plan is
// made: nothing of the planner is used again.
func (pl *planner) recycle() {
	sc := pl.p.sc
	sc.placements = len(pl.plan.Placements)
	if len(pl.plan.Placements) == 0 {
		pl.plan.Placements = nil // as when nothing was ever appended
	}
	sc.later = pl.later[:0]
	pl.p.recycle(sc, false)
	sc.tl.keep(pl.tl)
}

// place tries j now in the present state, honouring the reservations made
// so far: it runs for w from now and must not take what a reservation
// needs while both would hold it. On success the tasks are held
// tentatively (commit or p.undo). Otherwise it returns 0 and, when j would
// have fit but for a reservation, that reservation's job.
func (pl *planner) place(j *model.Job, o placeOpts, w int64) (int, model.JobID) {
	k := pl.placeAny(pl.p, j, o)
	if k == 0 {
		return 0, 0
	}
	end := pl.nowN + w
	if !pl.tl.acquireIn(pl.nowN, end) {
		return k, 0
	}
	blocker := pl.conflict(end)
	if blocker == 0 {
		return k, 0
	}
	pl.p.undo()
	if k = pl.placeAvoiding(j, o, end); k > 0 {
		return k, 0
	}
	return 0, blocker
}

// conflict checks the tentative placement against the reservations that
// start before end: on every node it uses, what is left after it must
// cover the deepest dip the timeline expects there. It returns the job of
// a reservation that would be delayed, or 0.
func (pl *planner) conflict(end int64) model.JobID {
	p := pl.p
	for i, tp := range p.tent {
		if i > 0 && p.tent[i-1].node == tp.node {
			continue
		}
		if !pl.tl.hasAcquire(tp.node) {
			continue
		}
		d, who := pl.tl.deficit(tp.node, pl.nowN, end)
		if d.isZero() {
			continue
		}
		nd := &p.nodes[tp.node]
		if nd.cpu < d.cpu || nd.mem < d.mem || min(nd.gpu, nd.freeSlots) < d.gpu || nd.scratch < d.scratch || !customCovers(nd.custom, d.custom) {
			if who == 0 {
				who = pl.firstReservationOn(tp.node)
			}
			return who
		}
	}
	return 0
}

func customCovers(free, need map[string]int64) bool {
	for k, v := range need {
		if v > free[k] {
			return false
		}
	}
	return true
}

func (pl *planner) firstReservationOn(n int32) model.JobID {
	for _, e := range pl.tl.dynNode[n] {
		if e.acq {
			return e.job
		}
	}
	return 0
}

// placeAvoiding places j with every reserved node's expected dip before
// end held back (a what-if, undone before it returns): j then only uses
// what no reservation needs. Failures are remembered per shape, since room
// only shrinks during a pass.
func (pl *planner) placeAvoiding(j *model.Job, o placeOpts, end int64) int {
	p := pl.p
	var s *shape
	if len(j.Groups) == 1 && o.domain == nil {
		s = p.shapeFor(&j.Groups[0], flavorFor(&j.Groups[0], o.flavor), j.Placement == model.PlacementSpread)
		for _, f := range pl.avoidFail[s] {
			if end >= f[0] && int64(j.GangSize()) >= f[1] {
				return 0
			}
		}
	}
	type phantom struct {
		n int32
		d vec
	}
	var held []phantom
	before := len(p.changes)
	for _, n := range pl.tl.resNodes {
		if d, _ := pl.tl.deficit(n, pl.nowN, end); !d.isZero() {
			p.holdBack(n, &d, -1)
			held = append(held, phantom{n, d})
		}
	}
	memo := p.noMemo
	p.noMemo = true
	k := pl.placeAny(p, j, o)
	p.noMemo = memo
	for i := range held {
		p.holdBack(held[i].n, &held[i].d, 1)
	}
	if k == 0 {
		// Nothing was placed and every node is as it was: take the holds
		// out of the change log, so that the indexes do not replay them
		// (a reservation may span hundreds of nodes).
		p.rollback(before)
		p.mark = -1
		if s != nil {
			pl.avoidFail[s] = append(pl.avoidFail[s], [2]int64{end, int64(j.GangSize())})
		}
	}
	return k
}

func flavorFor(g *model.TaskGroup, flavor string) string {
	if g.Resources.GPUs > 0 {
		return flavor
	}
	return ""
}

// commit keeps the tentative placement of j, which runs for w from now.
func (pl *planner) commit(j *model.Job, w int64) {
	p := pl.p
	end := pl.nowN + w
	for _, tp := range p.tent {
		pl.tl.add(tev{at: end, node: tp.node, d: vecOf(&tp.shape.req), job: j.ID})
	}
	p.emit(j, &pl.plan.Placements)
}

// reserve finds the earliest time after now at which j fits for w, given
// the timeline, and records a reservation there.
func (pl *planner) reserve(j *model.Job, o placeOpts, w int64) (*resv, bool) {
	fp, at, end, ok := pl.findStart(j, o, w)
	if !ok {
		return nil, false
	}
	r := pl.record(fp, j, at, end)
	fp.recycle(pl.p.sc, true)
	return r, true
}

// findStart sweeps a copy of the present state through the expected
// events; at each instant where the cluster-wide free amounts could hold
// j, it tries a real placement with every later reservation's dip held
// back. It returns the copy with j's placement held in it (fp.tent), the
// start and the end.
func (pl *planner) findStart(j *model.Job, o placeOpts, w int64) (fp *pass, at, end int64, ok bool) {
	return pl.sweep(j, o, w, 0)
}

// fitsAt reports whether j fits for w from the instant at, on fp: a
// future state made by pl.future() from the present state as it is now,
// which fitsAt leaves as it found it (what-if runs reuse one). On success
// use sees fp with j's placement held (fp.tent) before it is undone.
func (pl *planner) fitsAt(fp *pass, j *model.Job, o placeOpts, w, at int64, use func(*pass)) bool {
	tl := pl.tl
	type change struct {
		n int32
		d *vec
	}
	var applied []change
	dyn := tl.events()
	for i := range tl.base {
		if tl.base[i].at > at {
			break
		}
		if tl.base[i].at > pl.nowN {
			fp.addFree(tl.base[i].node, &tl.base[i].d, 1)
			applied = append(applied, change{tl.base[i].node, &tl.base[i].d})
		}
	}
	for i := range dyn {
		if dyn[i].at > at {
			break
		}
		if dyn[i].at > pl.nowN {
			d := dyn[i].d
			fp.addFree(dyn[i].node, &d, 1)
			applied = append(applied, change{dyn[i].node, &d})
		}
	}
	end := min(at+w, maxWindow+pl.nowN)
	var held []change
	if tl.acquireIn(at, end) {
		seen := map[int32]bool{}
		for i := range dyn {
			e := &dyn[i]
			if e.at <= at || e.at >= end || !e.acq || seen[e.node] {
				continue
			}
			seen[e.node] = true
			if d, _ := tl.deficit(e.node, at, end); !d.isZero() {
				fp.holdBack(e.node, &d, -1)
				held = append(held, change{e.node, &d})
			}
		}
	}
	ok := pl.placeAny(fp, j, o) > 0
	if ok {
		if use != nil {
			use(fp)
		}
		fp.undo()
	}
	for i := len(held) - 1; i >= 0; i-- {
		fp.holdBack(held[i].n, held[i].d, 1)
	}
	for i := len(applied) - 1; i >= 0; i-- {
		fp.addFree(applied[i].n, applied[i].d, -1)
	}
	return ok
}

// sweep is findStart, or with only > 0 a single try at that instant.
func (pl *planner) sweep(j *model.Job, o placeOpts, w, only int64) (fp *pass, at, end int64, ok bool) {
	fp = pl.future()
	fail := func() (*pass, int64, int64, bool) {
		fp.recycle(pl.p.sc, true)
		return nil, 0, 0, false
	}
	need := gangNeed(j)
	agg := fp.freeTotal()
	tl := pl.tl
	dyn := tl.events()
	bi, di := 0, 0
	for bi < len(tl.base) && tl.base[bi].at <= pl.nowN {
		bi++
	}
	for di < len(dyn) && dyn[di].at <= pl.nowN {
		di++
	}
	type phantom struct {
		n int32
		d vec
	}
	var held []phantom
	for tries := 0; tries < maxReserveTries; {
		at = -1
		if bi < len(tl.base) {
			at = tl.base[bi].at
		}
		if di < len(dyn) && (at < 0 || dyn[di].at < at) {
			at = dyn[di].at
		}
		last := false
		if only > 0 && (at < 0 || at >= only) {
			last = true
			if at != only {
				at = -2 // nothing happens at exactly `only`: apply nothing more
			}
		}
		if at == -1 {
			return fail() // everything has ended and it still does not fit
		}
		for ; bi < len(tl.base) && tl.base[bi].at == at; bi++ {
			fp.addFree(tl.base[bi].node, &tl.base[bi].d, 1)
			agg.addScaled(&tl.base[bi].d, 1)
		}
		for ; di < len(dyn) && dyn[di].at == at; di++ {
			fp.addFree(dyn[di].node, &dyn[di].d, 1)
			agg.addScaled(&dyn[di].d, 1)
		}
		if at == -2 {
			at = only
		}
		if !agg.covers(&need) {
			if last {
				return fail()
			}
			continue
		}
		if only > 0 && !last {
			continue
		}
		end = min(at+w, maxWindow+pl.nowN)
		if tl.acquireIn(at, end) {
			low := vec{cpu: agg.cpu, mem: agg.mem, gpu: agg.gpu, scratch: agg.scratch}
			run := low
			for b, d := bi, di; ; {
				t := int64(-1)
				if b < len(tl.base) && tl.base[b].at < end {
					t = tl.base[b].at
				}
				if d < len(dyn) && dyn[d].at < end && (t < 0 || dyn[d].at < t) {
					t = dyn[d].at
				}
				if t < 0 {
					break
				}
				for ; b < len(tl.base) && tl.base[b].at == t; b++ {
					run.addScaled(&tl.base[b].d, 1)
				}
				for ; d < len(dyn) && dyn[d].at == t; d++ {
					run.addScaled(&dyn[d].d, 1)
				}
				low.minWith(&run)
			}
			if !low.covers(&vec{cpu: need.cpu, mem: need.mem, gpu: need.gpu, scratch: need.scratch}) {
				if last {
					return fail()
				}
				continue
			}
			seen := map[int32]bool{}
			for k := di; k < len(dyn) && dyn[k].at < end; k++ {
				n := dyn[k].node
				if !dyn[k].acq || seen[n] {
					continue
				}
				seen[n] = true
				if d, _ := tl.deficit(n, at, end); !d.isZero() {
					fp.holdBack(n, &d, -1)
					held = append(held, phantom{n, d})
				}
			}
		}
		tries++
		if pl.placeAny(fp, j, o) > 0 {
			// fp is only read for its tentative placement now: the
			// held-back dips may stay.
			return fp, at, end, true
		}
		if last {
			return fail()
		}
		for i := range held {
			fp.holdBack(held[i].n, &held[i].d, 1)
		}
		held = held[:0]
	}
	return fail()
}

// future returns a copy of the present state to sweep through time: GPU
// device indices are not tracked (counts only), nowShare remembers what is
// free now (avoidFreeNow), and the unfit memo is off since room grows.
func (pl *planner) future() *pass {
	fp := pl.p.clone(false)
	fp.noMemo = true
	fp.domains = pl.p.domains
	for i := range fp.nodes {
		nd := &fp.nodes[i]
		nd.nowShare = pl.p.nodes[i].freeShare
		nd.reserved = 0
		// Count GPUs only: a GPU counted in the capacity but without a
		// device is never usable.
		nd.gpu -= max(0, nd.node.Capacity.GPUs-nd.capGPU)
		nd.freeSlots = 1 << 40
		nd.refreshShare()
	}
	return fp
}

// freeTotal sums the free amounts over all nodes (negative ones as zero).
func (p *pass) freeTotal() vec {
	var t vec
	for i := range p.nodes {
		nd := &p.nodes[i]
		t.cpu += max(nd.cpu, 0)
		t.mem += max(nd.mem, 0)
		t.gpu += max(min(nd.gpu, nd.freeSlots), 0)
		t.scratch += max(nd.scratch, 0)
		for k, v := range nd.custom {
			if t.custom == nil {
				t.custom = map[string]int64{}
			}
			t.custom[k] += max(v, 0)
		}
	}
	return t
}

// gangNeed is the total request of the tasks that must start together.
func gangNeed(j *model.Job) vec {
	var v vec
	left := j.GangSize()
	for gi := range j.Groups {
		g := &j.Groups[gi]
		n := min(g.Count, left)
		left -= n
		r := vecOf(&g.Resources)
		v.addScaled(&r, int64(n))
	}
	return v
}

// record turns fp's tentative placement of j into a reservation from at to
// end: the timeline gets the acquires and releases, and the present state
// marks the nodes reserved.
func (pl *planner) record(fp *pass, j *model.Job, at, end int64) *resv {
	per := map[int32]*vec{}
	var nodes []int32
	for _, tp := range fp.tent {
		v := per[tp.node]
		if v == nil {
			v = &vec{}
			per[tp.node] = v
			nodes = append(nodes, tp.node)
		}
		r := vecOf(&tp.shape.req)
		v.addScaled(&r, 1)
	}
	sort.Slice(nodes, func(a, b int) bool { return nodes[a] < nodes[b] })
	for _, n := range nodes {
		acq := vec{}
		acq.addScaled(per[n], -1)
		pl.tl.add(tev{at: at, node: n, d: acq, job: j.ID, acq: true})
		pl.tl.add(tev{at: end, node: n, d: *per[n], job: j.ID})
		pl.p.nodes[n].reserved++
		pl.p.touch(n)
	}
	r := &resv{job: j, start: at, end: end, nodes: nodes}
	pl.res = append(pl.res, r)
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = pl.p.nodes[n].name
	}
	sort.Strings(names)
	out := Reservation{JobID: j.ID, Start: pl.timeAt(at), End: pl.timeAt(end), Nodes: names}
	for task, tp := range fp.tent {
		g := &j.Groups[tp.group]
		out.Placements = append(out.Placements, Placement{JobID: j.ID, Group: g.Name, TaskIndex: task, Node: fp.nodes[tp.node].name, Resources: g.Resources.Copy()})
	}
	pl.plan.Reservations = append(pl.plan.Reservations, out)
	return r
}

func (pl *planner) timeAt(ns int64) time.Time { return time.Unix(0, ns).In(pl.now.Location()) }
