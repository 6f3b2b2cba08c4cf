package sched

import (
	"slices"

	"github.com/durehq/dure/internal/model"
)

// The timeline is what the scheduler expects to happen to free capacity
// after now: live allocations and jobs started in this pass release their
// resources when they are expected to end, and reservations acquire
// resources at their start and release them at their end. Times are Unix
// nanoseconds. Future states count GPUs, not device indices.

// vec is an amount in every dimension, for future-state arithmetic.
type vec struct {
	cpu, mem, gpu, scratch int64
	custom                 map[string]int64
}

func vecOf(r *model.Resources) vec {
	v := vec{cpu: r.MilliCPU, mem: r.MemoryBytes, gpu: r.GPUs, scratch: r.ScratchBytes}
	if len(r.Custom) > 0 {
		v.custom = make(map[string]int64, len(r.Custom))
		for k, x := range r.Custom {
			v.custom[k] = x
		}
	}
	return v
}

// addScaled adds k×o to v in place.
func (v *vec) addScaled(o *vec, k int64) {
	v.cpu += k * o.cpu
	v.mem += k * o.mem
	v.gpu += k * o.gpu
	v.scratch += k * o.scratch
	for name, x := range o.custom {
		if v.custom == nil {
			v.custom = make(map[string]int64, len(o.custom))
		}
		v.custom[name] += k * x
	}
}

func (v *vec) isZero() bool {
	if v.cpu != 0 || v.mem != 0 || v.gpu != 0 || v.scratch != 0 {
		return false
	}
	for _, x := range v.custom {
		if x != 0 {
			return false
		}
	}
	return true
}

// minWith lowers v to o in every dimension where o is lower.
func (v *vec) minWith(o *vec) {
	v.cpu = min(v.cpu, o.cpu)
	v.mem = min(v.mem, o.mem)
	v.gpu = min(v.gpu, o.gpu)
	v.scratch = min(v.scratch, o.scratch)
	for name, x := range o.custom {
		if v.custom == nil {
			v.custom = map[string]int64{}
		}
		v.custom[name] = min(v.custom[name], x)
	}
}

// covers reports whether v >= need in every dimension need uses.
func (v *vec) covers(need *vec) bool {
	if need.cpu > v.cpu || need.mem > v.mem || need.gpu > v.gpu || need.scratch > v.scratch {
		return false
	}
	for name, x := range need.custom {
		if x > v.custom[name] {
			return false
		}
	}
	return true
}

// addFree changes a node's free capacity by d (positive: release). It is
// how the timeline moves a node state through time and how what-if runs
// take and give back room; the change is logged for the shape indexes.
func (p *pass) addFree(n int32, d *vec, k int64) {
	nd := &p.nodes[n]
	nd.cpu += k * d.cpu
	nd.mem += k * d.mem
	nd.gpu += k * d.gpu
	nd.scratch += k * d.scratch
	for name, x := range d.custom {
		if nd.custom == nil {
			nd.custom = make(map[string]int64, len(d.custom))
		}
		nd.custom[name] += k * x
	}
	nd.refreshShare()
	p.touch(n)
}

// holdBack takes (sign -1) or gives back (+1) room a reservation needs
// later, in a what-if: like addFree, but GPUs count against the free device
// slots too, since what a reservation needs is usable GPUs.
func (p *pass) holdBack(n int32, d *vec, sign int64) {
	p.nodes[n].freeSlots += sign * d.gpu
	p.addFree(n, d, sign)
}

// tev is a change of one node's free capacity at a future time.
type tev struct {
	at   int64
	d    vec         // added to free: a release is positive, an acquire negative
	job  model.JobID // whose it is (for reasons)
	id   int64       // identity, for remove (dynamic events only)
	node int32
	acq  bool // a reservation's acquire
	// (Fields in this order: 72 bytes, not 80; a pass holds one event per
	// live allocation and per task started.)
}

// timeline holds the future events of one pass.
type timeline struct {
	now int64
	// base: releases of live allocations, by time; baseNode: positions in
	// base by node then time, nodeStart[n]..nodeStart[n+1] being node n's.
	base      []tev
	baseNode  []int32
	nodeStart []int32
	// dyn: events added during the pass (releases of jobs started now,
	// reservation acquires and releases), by time then identity; read it
	// through events(). added holds the events added since the last
	// events(), in identity order: a pass adds thousands of releases (one
	// per job started) and reads the order only for reservations, so
	// sorting is deferred to the reads rather than paid per insert.
	dyn     []tev
	added   []tev
	dynNode [][]tev
	// acquires: the times of reservation acquires, ascending.
	acquires []int64
	// resNodes: nodes some reservation holds something on (isRes[n]).
	resNodes []int32
	isRes    []bool
	scratch  []tev
	lastID   int64
}

// newTimeline starts a timeline with the release of every live allocation
// (allocNode[k] >= 0: the node allocs[k] is on) at end(allocs[k]).
func newTimeline(sc *Scratch, now int64, nodes int, allocs []*model.Allocation, allocNode []int32, end func(int, *model.Allocation) int64) *timeline {
	old := &sc.tl
	tl := &timeline{now: now, dynNode: grab(&old.dynNode, nodes), isRes: grab(&old.isRes, nodes),
		dyn: old.dyn[:0], added: old.added[:0], acquires: old.acquires[:0], resNodes: old.resNodes[:0], scratch: old.scratch[:0]}
	for i := range tl.dynNode {
		tl.dynNode[i] = tl.dynNode[i][:0]
	}
	clear(tl.isRes)
	// Sort small keys, not the events (they are large); the order is total
	// (time, node, job, position) so it never depends on map or input order
	// beyond what the caller sorted.

	// The amounts are read in allocation order too: the allocations lie
	// scattered in memory, and reading them in time order would miss the
	// cache for each.
	keys := grab(&sc.releaseKeys, len(allocs))[:0]
	amounts := grab(&sc.amounts, len(allocs)) // read only where written
	for k, a := range allocs {
		if n := allocNode[k]; n >= 0 {
			keys = append(keys, releaseKey{end(k, a), a.JobID, n, int32(k)})
			amounts[k] = vecOf(&a.Resources)
		}
	}
	sortReleaseKeys(keys, grab(&sc.relBuf, len(keys)))
	tl.base = grab(&old.base, len(keys))
	for i, k := range keys {
		tl.base[i] = tev{at: k.at, node: k.node, d: amounts[k.pos], job: k.job}
	}
	// By node, keeping time order within a node: a counting sort.
	tl.baseNode = grab(&old.baseNode, len(keys))
	tl.nodeStart = grab(&old.nodeStart, nodes+1)
	clear(tl.nodeStart)
	for i := range tl.base {
		tl.nodeStart[tl.base[i].node+1]++
	}
	for i := 1; i <= nodes; i++ {
		tl.nodeStart[i] += tl.nodeStart[i-1]
	}
	fill := append(grab(&sc.fill, nodes)[:0], tl.nodeStart[:nodes]...)
	for i := range tl.base {
		n := tl.base[i].node
		tl.baseNode[fill[n]] = int32(i)
		fill[n]++
	}
	return tl
}

// keep takes tl's buffers for the next pass's timeline: tl is not used
// again.
func (old *timeline) keep(tl *timeline) {
	*old = timeline{base: tl.base, baseNode: tl.baseNode, nodeStart: tl.nodeStart, dyn: tl.dyn, added: tl.added,
		dynNode: tl.dynNode, acquires: tl.acquires, resNodes: tl.resNodes, isRes: tl.isRes, scratch: tl.scratch}
}

// releaseKey orders the releases of live allocations: by time, node, job
// and position, a total order.
type releaseKey struct {
	at        int64
	job       model.JobID
	node, pos int32
}

func releaseLess(x, y *releaseKey) bool {
	switch {
	case x.at != y.at:
		return x.at < y.at
	case x.node != y.node:
		return x.node < y.node
	case x.job != y.job:
		return int64(x.job) < int64(y.job) // as the order always was
	}
	return x.pos < y.pos
}

// sortReleaseKeys sorts ks by releaseLess (buf is scratch as long as ks):
// sortJobKeys' merge sort, for this key (the comparison inlined; a cluster
// has tens of thousands of allocations).
func sortReleaseKeys(ks, buf []releaseKey) {
	const run = 12
	n := len(ks)
	for lo := 0; lo < n; lo += run {
		hi := min(lo+run, n)
		for i := lo + 1; i < hi; i++ {
			x := ks[i]
			j := i
			for j > lo && releaseLess(&x, &ks[j-1]) {
				ks[j] = ks[j-1]
				j--
			}
			ks[j] = x
		}
	}
	if n <= run {
		return
	}
	src, dst := ks, buf[:n]
	for width := run; width < n; width *= 2 {
		for lo := 0; lo < n; lo += 2 * width {
			mid, hi := min(lo+width, n), min(lo+2*width, n)
			i, j, k := lo, mid, lo
			for i < mid && j < hi {
				if releaseLess(&src[j], &src[i]) {
					dst[k] = src[j]
					j++
				} else {
					dst[k] = src[i]
					i++
				}
				k++
			}
			k += copy(dst[k:], src[i:mid])
			copy(dst[k:], src[j:hi])
		}
		src, dst = dst, src
	}
	if &src[0] != &ks[0] {
		copy(ks, src)
	}
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// add records a dynamic event and returns it with its identity (for
// remove). Events at the same instant keep the order they were added in.
func (tl *timeline) add(e tev) tev {
	tl.lastID++
	e.id = tl.lastID
	tl.added = append(reserve(tl.added, 1), e)
	if e.acq && !tl.isRes[e.node] {
		tl.isRes[e.node] = true
		tl.resNodes = append(tl.resNodes, e.node)
	}
	tl.dynNode[e.node] = append(tl.dynNode[e.node], e)
	if e.acq {
		j, _ := slices.BinarySearch(tl.acquires, e.at)
		tl.acquires = slices.Insert(tl.acquires, j, e.at)
	}
	return e
}

// events returns the dynamic events by time (ties: in the order added).
// The slice is valid until the next add or remove.
func (tl *timeline) events() []tev {
	if len(tl.added) == 0 {
		return tl.dyn
	}
	// Stable: equal times keep identity order, which is the order added
	// holds them in. Small keys are sorted, not the events (they are
	// large; a pass adds one per task started).
	type key struct {
		at int64
		i  int32
	}
	keys := make([]key, len(tl.added))
	for i := range tl.added {
		keys[i] = key{tl.added[i].at, int32(i)}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.at != b.at {
			return cmpInt64(a.at, b.at)
		}
		return int(a.i - b.i)
	})
	// Merge from the back, in place; at equal times the added event, whose
	// identity is larger, goes after.
	n, m := len(tl.dyn), len(tl.added)
	tl.dyn = slices.Grow(tl.dyn, m)[:n+m]
	i, j := n-1, m-1
	for k := n + m - 1; j >= 0; k-- {
		if a := &tl.added[keys[j].i]; i >= 0 && tl.dyn[i].at > a.at {
			tl.dyn[k] = tl.dyn[i]
			i--
		} else {
			tl.dyn[k] = *a
			j--
		}
	}
	tl.added = tl.added[:0]
	return tl.dyn
}

// remove takes back an event add returned (what-if runs undo with it).
func (tl *timeline) remove(e tev) {
	if i, found := slices.BinarySearchFunc(tl.added, e.id, func(x tev, id int64) int { return cmpInt64(x.id, id) }); found {
		tl.added = slices.Delete(tl.added, i, i+1)
	} else {
		i, _ := slices.BinarySearchFunc(tl.dyn, e.at, func(x tev, t int64) int { return cmpInt64(x.at, t) })
		for ; i < len(tl.dyn) && tl.dyn[i].at == e.at; i++ {
			if tl.dyn[i].id == e.id {
				tl.dyn = slices.Delete(tl.dyn, i, i+1)
				break
			}
		}
	}
	tl.dynNode[e.node] = slices.DeleteFunc(tl.dynNode[e.node], func(x tev) bool { return x.id == e.id })
	if e.acq {
		if j, found := slices.BinarySearch(tl.acquires, e.at); found {
			tl.acquires = slices.Delete(tl.acquires, j, j+1)
		}
	}
}

// acquireIn reports whether a reservation acquires anything in (t0, t1).
func (tl *timeline) acquireIn(t0, t1 int64) bool {
	i, _ := slices.BinarySearch(tl.acquires, t0+1)
	return i < len(tl.acquires) && tl.acquires[i] < t1
}

// hasAcquire reports whether some reservation acquires on node n.
func (tl *timeline) hasAcquire(n int32) bool { return tl.isRes[n] }

// deficit is how far node n's free capacity dips below its level at t0
// during (t0, t1), per dimension (all zero when it never dips), and the job
// whose reservation starts the deepest dip first (0 if none). Events at the
// same instant are applied together.
func (tl *timeline) deficit(n int32, t0, t1 int64) (vec, model.JobID) {
	ev := tl.scratch[:0]
	for _, i := range tl.baseNode[tl.nodeStart[n]:tl.nodeStart[n+1]] {
		if e := &tl.base[i]; e.at > t0 && e.at < t1 {
			ev = append(ev, *e)
		}
	}
	for _, e := range tl.dynNode[n] {
		if e.at > t0 && e.at < t1 {
			ev = append(ev, e)
		}
	}
	tl.scratch = ev
	slices.SortStableFunc(ev, func(a, b tev) int { return cmpInt64(a.at, b.at) })
	var run, low vec
	var who model.JobID
	for i := 0; i < len(ev); {
		at := ev[i].at
		var acq model.JobID
		for ; i < len(ev) && ev[i].at == at; i++ {
			run.addScaled(&ev[i].d, 1)
			if ev[i].acq && acq == 0 {
				acq = ev[i].job
			}
		}
		if dipsBelow(&run, &low) {
			if who == 0 {
				who = acq
			}
			low.minWith(&run)
		}
	}
	var out vec
	out.addScaled(&low, -1)
	return out, who
}

// dipsBelow reports whether run is below low in some dimension.
func dipsBelow(run, low *vec) bool {
	if run.cpu < low.cpu || run.mem < low.mem || run.gpu < low.gpu || run.scratch < low.scratch {
		return true
	}
	for k, x := range run.custom {
		if x < low.custom[k] {
			return true
		}
	}
	return false
}
