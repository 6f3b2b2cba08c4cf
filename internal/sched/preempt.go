package sched

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/durehq/dure/internal/model"
)

// Preemption (PolicyDure). A job that cannot start may stop running jobs
// that are
//
//   - in its own queue with a lower priority (priority preemption), or
//   - in another queue of the same tree that is borrowing (using more than
//     its nominal quota of a resource the job needs), while the job's queue
//     would stay within its own nominal quota (reclaim).
//
// Victims are tried cheapest first (lowest priority, least run time, fewest
// tasks) in a what-if on the pass's state: their resources and quota are
// given back one by one until the job fits (quota and a real placement,
// honouring reservations). Then victims that turn out unnecessary are put
// back, most expensive first. If the job does not fit even with every
// candidate gone, nothing is preempted. The what-if is undone either way:
// victims hold their resources until they stop, and the job starts in a
// later pass. Jobs already being stopped (Desired=stop) count as free room
// before any new victim is chosen and hold no quota. The preemptor is
// planned to start when its victims' grace period ends, as a reservation
// (so nothing started later in the pass takes its room), and its quota
// counts from now, on top of its victims' (safe until they stop).
//
// Victims stopping for a pending preemptor (Allocation.PreemptedBy) or
// requeued for it (Job.PreemptedBy) earmark their room for it: it goes
// first in the pass (dure.go), keeps the room with a reservation (wait)
// and chooses no new victims while they stop; no one else picks them or
// counts on their room before it has been served.

type victim struct {
	id       model.JobID
	allocs   []*model.Allocation
	nodes    []int32 // per alloc: node index, -1 if not schedulable
	q        *qnode
	owner    string
	prio     int
	started  int64
	tasks    int
	dem      demand
	stopping bool
	by       model.JobID // stopping for this job (Allocation.PreemptedBy), or 0
	reclaim  bool        // chosen as a borrowing queue's job (for the message)
	events   []tev       // its timeline events while stopped in a what-if
}

// name is how users know the victim: 123_7 for an array element.
func (v *victim) name() string {
	if a := v.allocs[0]; a.ArrayParent != 0 {
		return model.ElementName(a.ArrayParent, a.ArrayIndex)
	}
	return v.id.String()
}

// demand is the victim's quota demand, summed on first use.
func (pr *preemptor) demand(v *victim) demand {
	if v.dem == nil {
		v.dem = pr.d.tree.newDemand()
		for _, a := range v.allocs {
			pr.d.tree.demandOf(&a.Resources, 1, pr.d.nodeNamed(a.Node), v.dem)
		}
	}
	return v.dem
}

type preemptor struct {
	d       *dure
	running []*victim // nil until first needed
	claimed map[model.JobID]bool
	fp      *pass // the future state what-ifs run on (one per try)
	// waiting holds the pending jobs that others were preempted for and
	// that have not started yet: the room is earmarked for them.
	waiting map[model.JobID]*earmark
	// served: waiting preemptors already considered in this pass; first:
	// the waiting ones, in scheduling order.
	served map[model.JobID]bool
	first  []jobKey
	// chosen: victims chosen in this pass. Their quota counts until they
	// stop, but not in later preemptors' what-ifs, which look at the
	// instant they will have stopped.
	chosen []*victim
}

// maxVictimCandidates bounds the running jobs one preemptor tries as
// victims (cheapest first): past that, it gives up rather than scan a
// whole cluster of small jobs.
const maxVictimCandidates = 128

// earmark is what was preempted for one pending job: victims still
// stopping (Allocation.PreemptedBy) and victims already requeued
// (Job.PreemptedBy).
type earmark struct {
	stopping []*victim
	requeued []model.JobID
}

func newPreemptor(d *dure) *preemptor {
	pr := &preemptor{d: d, claimed: map[model.JobID]bool{}, waiting: map[model.JobID]*earmark{}, served: map[model.JobID]bool{}}
	// Earmarks come from jobs preempted for others, requeued or stopping:
	// most passes have none, and need no set of the pending IDs.
	if !d.anyPreempted && d.pl.p.stopping == 0 {
		return pr
	}
	ids := map[model.JobID]bool{}
	for _, u := range d.users {
		for _, k := range u.jobs {
			ids[k.id] = true
		}
	}
	mark := func(p model.JobID) *earmark {
		e := pr.waiting[p]
		if e == nil {
			e = &earmark{}
			pr.waiting[p] = e
		}
		return e
	}
	for _, u := range d.users {
		for _, k := range u.jobs {
			if j := d.facts[k.pos].j; j.PreemptedBy != 0 && j.PreemptedBy != j.ID && ids[j.PreemptedBy] {
				e := mark(j.PreemptedBy)
				e.requeued = append(e.requeued, j.ID)
			}
		}
	}
	for _, a := range d.pl.s.Allocs {
		if a != nil && !a.Status.Terminal() && a.Desired == model.DesiredStop && ids[a.PreemptedBy] {
			pr.load()
			break
		}
	}
	for _, v := range pr.running {
		if v.stopping && ids[v.by] {
			e := mark(v.by)
			e.stopping = append(e.stopping, v)
		}
	}
	if len(pr.waiting) > 0 {
		for _, u := range d.users {
			for i, k := range u.jobs {
				if pr.waiting[k.id] != nil {
					d.facts[k.pos].flags |= factWaiting
					u.jobs[i].flags |= factWaiting
					pr.first = append(pr.first, u.jobs[i].jobKey)
				}
			}
		}
		slices.SortFunc(pr.first, cmpJobKey)
	}
	return pr
}

// load groups the live allocations by job (running, by ID; each job's
// allocations in input order). Job IDs are usually dense: a table indexed
// by ID groups them without a map or a sort, and one slice of victims and
// two of allocations and nodes serve them all.
func (pr *preemptor) load() {
	if pr.running != nil {
		return
	}
	d := pr.d
	allocs := d.pl.s.Allocs
	allocNode := d.pl.p.allocNode
	live := 0
	var lo, hi model.JobID
	for _, a := range allocs {
		if a == nil || a.Status.Terminal() {
			continue
		}
		if live == 0 || a.JobID < lo {
			lo = a.JobID
		}
		if live == 0 || a.JobID > hi {
			hi = a.JobID
		}
		live++
	}
	pr.running = make([]*victim, 0)
	if live == 0 {
		return
	}
	// of[k]: the victim (in order of first allocation) of allocation k.
	of := make([]int32, len(allocs))
	var byID map[model.JobID]int32
	var table []int32 // victim+1 by ID - lo
	dense := uint64(hi-lo) < 4*uint64(live)
	if dense {
		table = make([]int32, uint64(hi-lo)+1)
	} else {
		byID = make(map[model.JobID]int32)
	}
	var count []int32 // allocations per victim
	for k, a := range allocs {
		of[k] = -1
		if a == nil || a.Status.Terminal() {
			continue
		}
		var v int32
		if dense {
			t := &table[a.JobID-lo]
			if *t == 0 {
				count = append(count, 0)
				*t = int32(len(count))
			}
			v = *t - 1
		} else {
			x, ok := byID[a.JobID]
			if !ok {
				x = int32(len(count))
				count = append(count, 0)
				byID[a.JobID] = x
			}
			v = x
		}
		of[k] = v
		count[v]++
	}
	vs := make([]victim, len(count))
	as := make([]*model.Allocation, live)
	ns := make([]int32, live)
	at := 0
	for v, c := range count {
		vs[v].allocs = as[at : at : at+int(c)]
		vs[v].nodes = ns[at : at : at+int(c)]
		at += int(c)
	}
	for k, a := range allocs {
		if of[k] < 0 {
			continue
		}
		v := &vs[of[k]]
		if len(v.allocs) == 0 {
			*v = victim{id: a.JobID, q: d.allocQueue(k, a), owner: a.Owner, prio: a.Priority, started: d.pl.nowN, allocs: v.allocs, nodes: v.nodes}
		}
		v.allocs = append(v.allocs, a)
		v.nodes = append(v.nodes, allocNode[k])
		v.tasks++
		v.prio = max(v.prio, a.Priority)
		if !a.StartedAt.IsZero() {
			v.started = min(v.started, a.StartedAt.UnixNano())
		}
		if a.Desired == model.DesiredStop {
			v.stopping = true
			v.by = max(v.by, a.PreemptedBy)
		}
	}
	pr.running = make([]*victim, 0, len(vs))
	if dense {
		for _, t := range table {
			if t > 0 {
				pr.running = append(pr.running, &vs[t-1])
			}
		}
		return
	}
	for v := range vs {
		pr.running = append(pr.running, &vs[v])
	}
	slices.SortFunc(pr.running, func(a, b *victim) int { return cmpInt64(int64(a.id), int64(b.id)) })
}

// stop plans v to end after the grace period (in the timeline) and gives
// back its quota; unstop undoes it. A job already stopping ends then
// anyway and holds no quota.
func (pr *preemptor) stop(v *victim) {
	pl := pr.d.pl
	grace := pl.nowN + pl.cfg.preemptGrace()
	if !v.stopping {
		for i, a := range v.allocs {
			if v.nodes[i] < 0 {
				continue
			}
			r := vecOf(&a.Resources)
			var back vec
			back.addScaled(&r, -1)
			v.events = append(v.events,
				pl.tl.add(tev{at: grace, node: v.nodes[i], d: r, job: v.id}),
				pl.tl.add(tev{at: pl.est.allocEnd(a), node: v.nodes[i], d: back, job: v.id}))
		}
		pr.d.tree.charge(v.q, pr.demand(v), -1)
	}
}

func (pr *preemptor) unstop(v *victim) {
	for i := len(v.events) - 1; i >= 0; i-- {
		pr.d.pl.tl.remove(v.events[i])
	}
	v.events = v.events[:0]
	if !v.stopping {
		pr.d.tree.charge(v.q, pr.demand(v), 1)
	}
}

// try looks for victims that let j start; on success it records the
// preemptions and j's reason and returns true.
func (pr *preemptor) try(j *model.Job, q *qnode, flavors []string, w int64) bool {
	d := pr.d
	d.preempts++
	if pr.noCandidates(j, q, flavors) {
		return false
	}
	pr.load()
	cands := pr.candidates(j, q, flavors)
	if len(cands) == 0 {
		return false
	}
	if len(cands) > maxVictimCandidates {
		cands = cands[:maxVictimCandidates]
	}
	if pr.hopeless(j, cands) {
		return false
	}
	defer pr.atGrace(j.ID)()
	pr.fp = pr.future()
	if pr.fits(j, q, flavors, w) {
		return false // it starts by then anyway: a reservation, not a preemption
	}
	var set []*victim
	fits := false
	for _, v := range cands {
		if v.reclaim && !v.stopping && !borrowing(v.q, pr.demand(v)) {
			continue // its queue is back within its nominal quota
		}
		pr.stop(v)
		set = append(set, v)
		if pr.fits(j, q, flavors, w) {
			fits = true
			break
		}
	}
	if !fits {
		for i := len(set) - 1; i >= 0; i-- {
			pr.unstop(set[i])
		}
		return false
	}
	// Put back victims that are not needed, most expensive first.
	for i := len(set) - 1; i >= 0; i-- {
		v := set[i]
		if v.stopping {
			continue
		}
		pr.unstop(v)
		if pr.fits(j, q, flavors, w) {
			set = slices.Delete(set, i, i+1)
			continue
		}
		pr.stop(v)
	}
	// The victims' ends stay in the timeline (they will stop); their quota
	// stays counted until they do. The preemptor is planned to start after
	// the grace period, as a reservation, and its quota counts from now.
	dem := pr.claim(j, q, flavors, w)
	for _, v := range set {
		if !v.stopping {
			pr.d.tree.charge(v.q, pr.demand(v), 1)
			pr.chosen = append(pr.chosen, v)
		}
	}
	d.tree.charge(q, dem, 1)

	var names []string
	var waiting []string
	slices.SortFunc(set, func(a, b *victim) int { return cmpInt64(int64(a.id), int64(b.id)) })
	for _, v := range set {
		pr.claimed[v.id] = true
		if v.stopping {
			waiting = append(waiting, v.name())
			continue
		}
		ids := make([]string, len(v.allocs))
		for i, a := range v.allocs {
			ids[i] = a.ID
		}
		sort.Strings(ids)
		d.pl.plan.Preemptions = append(d.pl.plan.Preemptions, Preemption{
			JobID: v.id, AllocIDs: ids, Preemptor: j.ID,
			Reason: model.Reason{Code: model.ReasonPreempted, Message: pr.victimMessage(j, q, v)},
		})
		names = append(names, v.name())
	}
	them := func(n int) string {
		if n == 1 {
			return "it"
		}
		return "them"
	}
	msg := ""
	switch {
	case len(names) > 0:
		msg = fmt.Sprintf("preempting %s %s to start; waiting for %s to stop", pluralWord(len(names), "job"), strings.Join(names, ", "), them(len(names)+len(waiting)))
	default:
		msg = fmt.Sprintf("waiting for preempted %s %s to stop", pluralWord(len(waiting), "job"), strings.Join(waiting, ", "))
	}
	d.pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonPreempting, Message: msg}
	return true
}

// hopeless reports whether j could not start at the end of the grace
// period even with every candidate stopped: the room the whole cluster
// could have then (free now, every release until then, the candidates'
// allocations; no reservation or earmark held back) falls short of its
// gang in some dimension. Every what-if of try would fail; it gives up
// without them.
func (pr *preemptor) hopeless(j *model.Job, cands []*victim) bool {
	pl := pr.d.pl
	at := pl.nowN + pl.cfg.preemptGrace()
	var room vec
	add := func(d *vec) {
		room.cpu += max(d.cpu, 0)
		room.mem += max(d.mem, 0)
		room.gpu += max(d.gpu, 0)
		room.scratch += max(d.scratch, 0)
	}
	for i := range pl.p.nodes {
		nd := &pl.p.nodes[i]
		add(&vec{cpu: nd.cpu, mem: nd.mem, gpu: nd.gpu, scratch: nd.scratch})
	}
	tl := pl.tl
	for i := range tl.base {
		if tl.base[i].at > at {
			break
		}
		if tl.base[i].at > pl.nowN {
			add(&tl.base[i].d)
		}
	}
	for _, evs := range [][]tev{tl.dyn, tl.added} {
		for i := range evs {
			if evs[i].at > pl.nowN && evs[i].at <= at {
				add(&evs[i].d)
			}
		}
	}
	for _, v := range cands {
		if v.stopping {
			continue // its end is in the timeline already
		}
		for i, a := range v.allocs {
			if v.nodes[i] >= 0 {
				r := vecOf(&a.Resources)
				add(&r)
			}
		}
	}
	need := gangNeed(j)
	return need.cpu > room.cpu || need.mem > room.mem || need.gpu > room.gpu || need.scratch > room.scratch
}

// wait handles a preemptor that could not start now while victims are
// still stopping for it (Allocation.PreemptedBy): if it fits once they are
// gone (after the grace period), it keeps that room with a reservation and
// counts against its quota from now. It returns false if it would not fit
// even then; the caller chooses no further victims either way.
func (pr *preemptor) wait(j *model.Job, q *qnode, flavors []string, w int64, victims []*victim) bool {
	if len(victims) == 0 {
		return false
	}
	defer pr.atGrace(j.ID)()
	pr.fp = pr.future()
	if !pr.fits(j, q, flavors, w) {
		return false
	}
	dem := pr.claim(j, q, flavors, w)
	pr.d.tree.charge(q, dem, 1)
	for _, v := range victims {
		pr.claimed[v.id] = true
	}
	pr.d.pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonPreempting, Message: pr.waitMessage(victims)}
	return true
}

func (pr *preemptor) waitMessage(victims []*victim) string {
	ids := make([]string, len(victims))
	for i, v := range victims {
		ids[i] = v.name()
	}
	return fmt.Sprintf("waiting for preempted %s %s to stop", pluralWord(len(ids), "job"), strings.Join(ids, ", "))
}

// atGrace prepares the what-ifs of preemptor j, which look at the instant
// its victims will have stopped: victims chosen earlier in this pass hold
// no quota then, and the room of victims stopping for other preemptors
// that have not been considered yet stays held (earmarked for them). It
// returns the undo.
func (pr *preemptor) atGrace(j model.JobID) func() {
	d := pr.d
	earlier := pr.chosen
	for _, v := range earlier {
		d.tree.charge(v.q, pr.demand(v), -1)
	}
	held := pr.holdEarmarked(j)
	return func() {
		for i := len(held) - 1; i >= 0; i-- {
			d.pl.tl.remove(held[i])
		}
		for _, v := range earlier {
			d.tree.charge(v.q, pr.demand(v), 1)
		}
	}
}

// holdEarmarked adds timeline events that keep the room of victims
// stopping for other preemptors not yet considered in this pass.
func (pr *preemptor) holdEarmarked(j model.JobID) []tev {
	pl := pr.d.pl
	grace := pl.nowN + pl.cfg.preemptGrace()
	var evs []tev
	for _, v := range pr.running {
		if !v.stopping || v.by == j || pr.waiting[v.by] == nil || pr.served[v.by] {
			continue
		}
		for i, a := range v.allocs {
			if v.nodes[i] < 0 {
				continue
			}
			var back vec
			r := vecOf(&a.Resources)
			back.addScaled(&r, -1)
			evs = append(evs, pl.tl.add(tev{at: grace, node: v.nodes[i], d: back, job: v.id}))
		}
	}
	return evs
}

func pluralWord(n int, w string) string {
	if n == 1 {
		return w
	}
	return w + "s"
}

func (pr *preemptor) victimMessage(j *model.Job, q *qnode, v *victim) string {
	if v.reclaim {
		return fmt.Sprintf("preempted by job %s: queue %s reclaims quota that queue %s borrowed", j.DisplayName(), q.name, v.q.name)
	}
	return fmt.Sprintf("preempted by job %s of higher priority (%d > %d) in queue %s", j.DisplayName(), j.Priority, v.prio, q.name)
}

// noCandidates reports, without looking at the running jobs, that
// candidates would find none for j: no job is being stopped, no running
// job of q has a lower priority, and there is nothing to reclaim (q would
// not stay within its nominal quota, or no other queue of its tree
// borrows a key j needs).
func (pr *preemptor) noCandidates(j *model.Job, q *qnode, flavors []string) bool {
	d := pr.d
	if d.pl.p.stopping > 0 || q.liveAllocs > 0 && q.minPrio < j.Priority {
		return false
	}
	need := d.gangDemand(j, flavors[0])
	return !withinNominal(q, need) || !borrowsAny(q.root, q, need)
}

// withinNominal reports whether need asks for at least one resource q's
// tree governs and q stays within its own nominal quota of every such
// resource with it: the condition for reclaiming what others borrowed.
func withinNominal(q *qnode, need demand) bool {
	within := false
	for k, v := range need {
		if v <= 0 || q.root.rs[k] == nil {
			continue
		}
		r := q.rs[k]
		if r == nil || r.used+v > r.effN {
			return false
		}
		within = true
	}
	return within
}

// borrowsAny reports whether a queue of n's subtree other than q borrows
// a key need asks for that the tree governs.
func borrowsAny(n, q *qnode, need demand) bool {
	if n != q {
		for k, x := range need {
			if x > 0 && q.root.rs[k] != nil && borrowingKey(n, k) {
				return true
			}
		}
	}
	for _, c := range n.children {
		if borrowsAny(c, q, need) {
			return true
		}
	}
	return false
}

// candidates lists the running jobs j may preempt, cheapest first: jobs
// already stopping, then by priority, run time so far, task count, newest.
func (pr *preemptor) candidates(j *model.Job, q *qnode, flavors []string) []*victim {
	d := pr.d
	need := d.gangDemand(j, flavors[0])
	root := q.root
	reclaim := withinNominal(q, need)
	var out []*victim
	for _, v := range pr.running {
		if pr.claimed[v.id] || v.stopping && v.by != 0 && v.by != j.ID && pr.waiting[v.by] != nil {
			continue // chosen for another preemptor, or its room is earmarked for one
		}
		v.reclaim = false
		switch {
		case v.stopping:
		case v.q == q && v.prio < j.Priority:
		case v.q != q && reclaim && sameRoot(v.q, root) && usesBorrowed(pr.demand(v), v.q, need, root):
			v.reclaim = true
		default:
			continue
		}
		out = append(out, v)
	}
	now := d.pl.nowN
	slices.SortStableFunc(out, func(a, b *victim) int {
		switch {
		case a.stopping != b.stopping:
			if a.stopping {
				return -1
			}
			return 1
		case a.prio != b.prio:
			return a.prio - b.prio
		case a.started != b.started:
			return cmpInt64(now-a.started, now-b.started)
		case a.tasks != b.tasks:
			return a.tasks - b.tasks
		}
		return cmpInt64(int64(b.id), int64(a.id))
	})
	return out
}

func sameRoot(q, root *qnode) bool {
	for n := q; n != nil; n = n.parent {
		if n == root {
			return true
		}
	}
	return false
}

// usesBorrowed: v's queue is borrowing a resource j needs that the tree
// governs, and v holds some.
func usesBorrowed(vdem demand, vq *qnode, need demand, root *qnode) bool {
	for k, x := range need {
		if x > 0 && vdem[k] > 0 && root.rs[k] != nil && borrowingKey(vq, k) {
			return true
		}
	}
	return false
}

// borrowing reports whether q uses more than its nominal quota of a key in
// dem that its tree governs (a queue without a quota for a governed key
// borrows all it uses).
func borrowing(q *qnode, dem demand) bool {
	root := q.root
	for k, x := range dem {
		if x > 0 && root.rs[k] != nil && borrowingKey(q, k) {
			return true
		}
	}
	return false
}

func borrowingKey(q *qnode, k int) bool {
	if r := q.rs[k]; r != nil {
		return r.used > r.effN
	}
	return true
}

// future returns a fresh future state for what-if runs, giving the last
// one's memory back.
func (pr *preemptor) future() *pass {
	if pr.fp != nil {
		pr.fp.recycle(pr.d.pl.p.sc, true)
	}
	return pr.d.pl.future()
}

// claim reserves j's start after the grace period (fits said it fits) and
// returns its quota demand.
func (pr *preemptor) claim(j *model.Job, q *qnode, flavors []string, w int64) demand {
	d := pr.d
	pl := d.pl
	at := pl.nowN + pl.cfg.preemptGrace()
	for _, f := range flavors {
		var got demand
		pr.startsAt(j, q, f, w, at, func(fp *pass, dem demand) {
			pl.record(fp, j, at, at+w)
			pl.preemptRes++
			got = dem
		})
		if got != nil {
			return got
		}
	}
	return d.tree.newDemand()
}

// fits reports whether j could start after the grace period, in the
// what-if timeline (quota and a real placement, honouring reservations).
func (pr *preemptor) fits(j *model.Job, q *qnode, flavors []string, w int64) bool {
	at := pr.d.pl.nowN + pr.d.pl.cfg.preemptGrace()
	for _, f := range flavors {
		if pr.startsAt(j, q, f, w, at, nil) {
			return true
		}
	}
	return false
}

// startsAt: does j (GPU flavor f) fit its quota and the future state at
// at? use, if set, sees the placement and its quota demand.
func (pr *preemptor) startsAt(j *model.Job, q *qnode, f string, w, at int64, use func(*pass, demand)) bool {
	d := pr.d
	if ok, _ := d.tree.admits(q, d.gangDemand(j, f)); !ok {
		return false
	}
	fits := false
	d.pl.fitsAt(pr.fp, j, placeOpts{flavor: f}, w, at, func(fp *pass) {
		dem := d.tree.newDemand()
		for _, tp := range fp.tent {
			d.tree.demandOf(&tp.shape.req, 1, fp.nodes[tp.node].node, dem)
		}
		if ok, _ := d.tree.admits(q, dem); ok {
			fits = true
			if use != nil {
				use(fp, dem)
			}
		}
	})
	return fits
}
