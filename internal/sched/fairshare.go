package sched

import (
	"math"

	"github.com/durehq/dure/internal/model"
)

// Fair share (PolicyDure). Every queue and every user inside a queue has a
// usage in cpu, memory and GPUs: what it holds now plus its decayed past
// usage,
//
//	dec = Σ over its finished and running jobs of  u × (2^(-(now-end)/H) - 2^(-(now-start)/H))
//
// (u: the job's resources; H: Config.FairShareHalfLife; a running job ends
// "now"). A job that held u for a long time up to now adds about u, so dec is
// in the same units as current usage, and usage from H ago counts half. The
// share of a queue is its dominant resource's (cur + dec) / cluster capacity,
// divided by its weight. Queues are compared with their siblings in the tree
// (the one with the lowest share goes next, at every level); inside a queue,
// jobs go by priority, then the owner with the lowest share, then submit
// time. That last order does not change as time passes (an expansion
// factor would): the job a reservation is made for stays the same from
// pass to pass until it starts, so the room drained for it is not given
// to another job halfway, and long jobs are not overtaken forever.

type usage = [3]float64

func shareOf(cur, dec *usage, capacity *usage, weight float64) float64 {
	s := 0.0
	for r := 0; r < 3; r++ {
		if capacity[r] > 0 {
			s = max(s, (cur[r]+dec[r])/capacity[r])
		}
	}
	return s / weight
}

func usageOf(r *model.Resources, k float64) usage {
	return usage{float64(r.MilliCPU) * k, float64(r.MemoryBytes) * k, float64(r.GPUs) * k}
}

// fair holds the fair-share state of one pass.
type fair struct {
	now      int64
	halfLife float64
	capacity usage
	users    map[userKey]*userList
}

type userKey struct {
	queue, owner string
}

// decay is 2^(-(now-t)/H) for t <= now.
func (f *fair) decay(t int64) float64 {
	if t >= f.now {
		return 1
	}
	return exp2neg(-float64(f.now-t) / f.halfLife)
}

// spanWeight is 1 - 2^(-d/H): the decayed weight of usage over a span d
// that ends at now (d/H small: its series, one exp saved per job).
func (f *fair) spanWeight(d int64) float64 {
	y := float64(d) / f.halfLife * math.Ln2
	if y < 0.01 {
		return y * (1 - y/2*(1-y/3)) // 1 - e^-y to 1e-8
	}
	return 1 - exp2neg(-float64(d)/f.halfLife)
}

// exp2neg is 2^x for x <= 0, to about 1e-7 relative error: the integer
// part scales the exponent bits, a polynomial does the fraction. Fair share
// evaluates it for every finished job in every pass, where math.Exp2
// dominated the pass; weights need no more precision, and the arithmetic is
// the same on every platform.
func exp2neg(x float64) float64 {
	if x < -1000 {
		return 0
	}
	i := math.Floor(x)
	f := x - i // in [0, 1)
	// 2^f on [0,1): its Taylor series to degree 9 (error below 1e-8).
	p := 1 + f*(0.6931471805599453+f*(0.2402265069591007+f*(0.055504108664821576+f*(0.009618129107628477+f*(0.0013333558146428441+f*(0.00015403530393381606+f*(1.5252733804059838e-05+f*(1.3215486790144305e-06+f*(1.0178086009239696e-07)))))))))
	e := int64(i) + 1023
	if e <= 0 {
		return 0
	}
	return p * math.Float64frombits(uint64(e)<<52)
}

// source is one queue's own pending jobs, by owner.
type source struct {
	q     *qnode
	users userHeap
	left  int
}

// userList is one owner's pending jobs in one queue, in order.
type userList struct {
	owner    string
	queue    string
	q        *qnode      // the queue, once known (dure.gather)
	jobs     []queuedJob // in scheduling order (pos: index in dure.facts)
	next     int
	cur, dec usage
	share    float64
	idx      int     // in the source's heap
	src      *source // the source it is filed under
	// recent: the owner's recent run times (predictions), looked up once.
	recent *recentRuns
	// lo, count: where gather files the owner's jobs.
	lo, count int
}

// userHeap orders a queue's owners by their next job: priority first, then
// the owner's share, then submit time and ID. The order is total (IDs are
// unique), so the top does not depend on how the heap got there.
type userHeap []*userList

func (h userHeap) less(a, b int) bool {
	x, y := h[a], h[b]
	jx, jy := &x.jobs[x.next], &y.jobs[y.next]
	switch {
	case jx.prio != jy.prio:
		return jx.prio > jy.prio
	case x.share != y.share:
		return x.share < y.share
	case jx.sec != jy.sec:
		return jx.sec < jy.sec
	case jx.nsec != jy.nsec:
		return jx.nsec < jy.nsec
	}
	return jx.id < jy.id
}

func (h userHeap) swap(a, b int) { h[a], h[b] = h[b], h[a]; h[a].idx = a; h[b].idx = b }

func (h *userHeap) push(u *userList) {
	u.idx = len(*h)
	*h = append(*h, u)
	h.up(u.idx)
}

// popTop removes the top owner.
func (h *userHeap) popTop() {
	old := *h
	n := len(old) - 1
	old.swap(0, n)
	old[n].idx = -1
	*h = old[:n]
	h.down(0)
}

// fix restores the order after the owner at i changed.
func (h userHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h userHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down sifts i down and reports whether it moved.
func (h userHeap) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > i0
}

// newFairState starts the fair-share state of a pass: decayed usage from
// history and live allocations is added by load, for the queues and the
// owners with lists (user) by then. Only what can change an ordering is
// computed: owners' usage for owners with pending jobs, and queues' usage
// when more than one queue has pending jobs (the history window may be
// long), or for every queue (Queues).
func newFairState(now int64, cfg Config, capacity usage) *fair {
	return &fair{now: now, halfLife: float64(cfg.halfLife()), capacity: capacity, users: map[userKey]*userList{}}
}

// load adds the usage of history and live allocations to the queues (when
// queueLevel) and to the owners f has lists for; allocQ gives the queue of
// the k-th allocation.
func (f *fair) load(s *Snapshot, tree *queueTree, queueLevel bool, order historyOrder, allocQ func(k int, a *model.Allocation) *qnode) {
	now := f.now
	// An owner's usage is only ever compared with another owner's in the
	// same queue (userHeap): owners alone in their queue need none, and
	// when no owner needs it and queues do not compete, the history is
	// not read at all.
	ownersIn := map[string]int{} // by queue
	for k := range f.users {
		ownersIn[k.queue]++
	}
	owners := map[string][]*userList{} // an owner's lists, one per queue
	for k, u := range f.users {
		u.queue = k.queue
		if ownersIn[k.queue] > 1 {
			owners[k.owner] = append(owners[k.owner], u)
		}
	}
	history := len(s.History)
	if !queueLevel && len(owners) == 0 {
		history = 0
	}
	// Usage that ended more than historyHalfLives half-lives ago weighs
	// under 0.1%: the scan runs newest first and stops there.
	horizon := now - int64(historyHalfLives*f.halfLife)
	lastName, lastQ := "", (*qnode)(nil)
	for k := range history {
		h := &s.History[order.newest(k)]
		end := h.EndTime.UnixNano()
		if end < horizon {
			break
		}
		lists := owners[h.Owner]
		if !queueLevel && lists == nil {
			continue
		}
		qname := h.Queue
		if qname == "" {
			qname = model.DefaultQueue
		}
		var u *userList
		for _, l := range lists {
			if l.queue == qname {
				u = l
			}
		}
		if u == nil && !queueLevel {
			continue
		}
		if qname != lastName {
			lastName, lastQ = qname, tree.node(qname)
		}
		start := h.StartTime.UnixNano()
		if h.StartTime.IsZero() || end > now || end <= start {
			continue
		}
		d := usageOf(&h.Usage, f.decay(end)*f.spanWeight(end-start))
		f.addDec(lastQ, u, queueLevel, &d)
	}
	var lastOwner string
	var lastLists []*userList
	for k, a := range s.Allocs {
		if a == nil || a.Status.Terminal() {
			continue
		}
		q := allocQ(k, a)
		if q.liveAllocs == 0 || a.Priority < q.minPrio {
			q.minPrio = a.Priority
		}
		q.liveAllocs++
		// A job's allocations come in a row: look its owner up once.
		if lastLists == nil || a.Owner != lastOwner {
			lastOwner, lastLists = a.Owner, owners[a.Owner]
			if lastLists == nil {
				lastLists = []*userList{}
			}
		}
		var u *userList
		for _, l := range lastLists {
			if l.queue == q.name {
				u = l
			}
		}
		start := now
		if !a.StartedAt.IsZero() {
			start = min(a.StartedAt.UnixNano(), now)
		}
		d := usageOf(&a.Resources, 1-f.decay(start))
		f.addDec(q, u, true, &d)
		c := usageOf(&a.Resources, 1)
		f.addCur(q, u, &c)
	}
}

// user returns the list of owner's jobs in the queue named qname, creating
// it.
func (f *fair) user(qname, owner string) *userList {
	k := userKey{qname, owner}
	u := f.users[k]
	if u == nil {
		u = &userList{owner: owner, queue: qname, idx: -1}
		f.users[k] = u
	}
	return u
}

// addDec adds decayed usage to a queue and its ancestors (when queues
// matter) and to an owner (u, when it matters: nil otherwise).
func (f *fair) addDec(q *qnode, u *userList, queues bool, d *usage) {
	if queues {
		for n := q; n != nil; n = n.parent {
			for r := 0; r < 3; r++ {
				n.dec[r] += d[r]
			}
			n.shareOK = false
		}
	}
	if u != nil {
		for r := 0; r < 3; r++ {
			u.dec[r] += d[r]
		}
	}
}

// addCur adds current usage to a queue, its ancestors and an owner (u may
// be nil).
func (f *fair) addCur(q *qnode, u *userList, d *usage) {
	for n := q; n != nil; n = n.parent {
		for r := 0; r < 3; r++ {
			n.cur[r] += d[r]
		}
		n.shareOK = false
	}
	if u != nil {
		for r := 0; r < 3; r++ {
			u.cur[r] += d[r]
		}
		u.share = shareOf(&u.cur, &u.dec, &f.capacity, 1)
	}
}

// queueShare is a queue's share of the cluster, weighted (cached until its
// usage changes: pick compares shares for every job).
func (f *fair) queueShare(n *qnode) float64 {
	if !n.shareOK {
		n.share, n.shareOK = shareOf(&n.cur, &n.dec, &f.capacity, n.weight), true
	}
	return n.share
}

// buildSources files the owners' lists (each non-empty) under their
// queues.
func (f *fair) buildSources(users []*userList) {
	for _, u := range users {
		q := u.q
		if q.src == nil {
			q.src = &source{q: q}
		}
		u.src = q.src
		q.src.left += len(u.jobs)
		for n := q; n != nil; n = n.parent {
			n.pending += len(u.jobs)
		}
		u.share = shareOf(&u.cur, &u.dec, &f.capacity, 1)
		q.src.users.push(u)
	}
}

// pick returns the source whose next job goes next: from the roots down,
// the child with the lowest share among those with pending work (a queue's
// own jobs compete with its children as one more child of weight 1).
func (f *fair) pick(tree *queueTree) *source {
	var best *qnode
	for _, r := range tree.roots {
		if r.pending > 0 && (best == nil || f.queueShare(r) < f.queueShare(best)) {
			best = r
		}
	}
	for n := best; n != nil; {
		var next *qnode
		for _, c := range n.children {
			if c.pending > 0 && (next == nil || f.queueShare(c) < f.queueShare(next)) {
				next = c
			}
		}
		if n.src != nil && n.src.left > 0 && (next == nil || f.ownShare(n) <= f.queueShare(next)) {
			return n.src
		}
		n = next
	}
	return nil
}

// ownShare is the share of a queue's own jobs (not its children's).
func (f *fair) ownShare(n *qnode) float64 {
	var cur, dec usage
	cur, dec = n.cur, n.dec
	for _, c := range n.children {
		for r := 0; r < 3; r++ {
			cur[r] -= c.cur[r]
			dec[r] -= c.dec[r]
		}
	}
	return shareOf(&cur, &dec, &f.capacity, 1)
}

// pop takes the next job of a source.
func (src *source) pop() queuedJob {
	u := src.users[0]
	k := u.jobs[u.next]
	u.next++
	src.left--
	for n := src.q; n != nil; n = n.parent {
		n.pending--
	}
	if u.next == len(u.jobs) {
		src.users.popTop()
	} else {
		src.users.fix(0)
	}
	return k
}

// started records that a job of owner u in queue q started holding r in
// total.
func (f *fair) started(q *qnode, u *userList, r *usage) {
	f.addCur(q, u, r)
	if q.src != nil && u.idx >= 0 && u.idx < len(q.src.users) && q.src.users[u.idx] == u {
		q.src.users.fix(u.idx)
	}
}

// historyHalfLives is how far back (in half-lives) history counts for fair
// share and predictions.
const historyHalfLives = 10

// boundedSlowdownFloor is the τ of bounded slowdown (10 s): backfill
// serves jobs expected to run no longer than that first (dure.go).
const boundedSlowdownFloor = 10e9
