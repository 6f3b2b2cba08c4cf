package sched

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/durehq/dure/internal/model"
)

// scheduleDure is dure's own policy; README.md describes it. In short:
//
//  1. Gate: jobs whose dependencies are not met wait (or can never run).
//  2. Main phase: preemptors whose victims are stopping or requeued first
//     (the room is theirs); then, while queues compete, wide jobs that
//     starved (starve.go); then jobs in fair order (queues by weighted
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
//
// With tails (s.Tails, tails.go), ok is false when the pass cannot vouch
// that the tails' jobs fare as their After did; the caller then runs it
// again with them pending.
func scheduleDure(s *Snapshot, now time.Time, cfg Config, sc *Scratch) (plan *Plan, ok bool) {
	pl := newPlannerIn(sc, s, now, cfg, !cfg.NoPredictions, true)
	depth := cfg.ReservationDepth
	if depth == 0 {
		depth = DefaultReservationDepth
	}
	d := newDure(pl)
	d.tails = newTailWatch(s.Tails)
	d.gather(s.Pending)
	d.fair.load(s, d.tree, d.queueLevel, pl.history, d.allocQueue)
	d.pre = newPreemptor(d)
	d.fair.buildSources(d.users)
	// Preemptors go first until they start: the room their victims free is
	// theirs. While victims stop, a preemptor's reservation is made before
	// anyone else's and it chooses no new victims; once they are requeued,
	// it is placed before anyone else (Allocation.PreemptedBy,
	// Job.PreemptedBy).
	for _, k := range d.pre.first {
		d.consider(k.pos, k.id, true)
		d.pre.served[k.id] = true
	}
	reserving := func() bool { return depth < 0 || len(pl.res)-pl.preemptRes < depth }
	// Jobs that would borrow quota come after every job that stays within
	// its queue's nominal quota (as in Kueue): a queue reclaiming what it
	// lent goes before the borrower, in this pass and after its victims
	// were requeued. Once a queue's next job borrows, the queue's later
	// jobs wait behind it (parked), so its own order (priority first)
	// holds.
	ready := 0
	for _, u := range d.users {
		ready += len(u.jobs)
	}
	d.starvedFirst(reserving)
	// Jobs left for backfill fill items from the front, borrowers from
	// the back (in reverse): one slice, since no job is both.
	items := grab(&sc.items, ready)
	nRest, nBorrow := 0, 0
	var src *source
	for {
		// Once no reservation is left to make, nothing starts in this loop
		// and the shares stay as they are: pick would choose the same
		// source again until it is empty.
		if src == nil || src.left == 0 || reserving() {
			if src = d.fair.pick(d.tree); src == nil {
				break
			}
		}
		k := src.pop()
		if k.flags&(factWaiting|factStarved) != 0 {
			continue // considered above
		}
		it := backfillItem{k.pos, k.id, k.prio, k.run}
		if src.q.parked || d.borrows(&k, src.q) {
			src.q.parked = true
			nBorrow++
			items[ready-nBorrow] = it
			continue
		}
		if !reserving() {
			items[nRest] = it
			nRest++
			continue
		}
		d.consider(k.pos, k.id, true)
	}
	rest, borrowers := items[:nRest], items[ready-nBorrow:]
	slices.Reverse(borrowers)
	nLeft := 0 // borrowers left for backfill, kept in place
	for _, it := range borrowers {
		if !reserving() {
			borrowers[nLeft] = it
			nLeft++
			continue
		}
		d.consider(it.fi, it.id, true)
	}
	// Backfill, jobs that borrow last: by priority; among equals, jobs
	// expected to run less than τ first, the rest in fair order; the set
	// that fills the free room best goes first (pack.go).
	scratch := grab(&sc.tmp, max(len(rest), nLeft))
	for _, js := range [][]backfillItem{rest, borrowers[:nLeft]} {
		d.backfillOrder(js, scratch)
		d.packFirst(js, scratch)
		// The facts, copied in backfill order first (nothing changes them
		// now): the copy's loads overlap, where consider would wait for
		// each job's in turn.
		ordered := grab(&sc.ordered, len(js))
		for i := range js {
			ordered[i] = d.facts[js[i].fi]
		}
		for i := range js {
			d.considerFacts(&ordered[i], js[i].id, false)
		}
	}
	pl.finish()
	ok = true
	if d.tails != nil {
		pl.plan.Tails, ok = d.tails.tailReasons(pl, s.Tails)
	}
	if d.pre.fp != nil {
		d.pre.fp.recycle(sc, true)
	}
	pl.recycle()
	return pl.plan, ok
}

// jobFacts is what a PolicyDure pass needs to know of one pending job,
// worked out once (gather): the policy's loops read this flat slice rather
// than the jobs, which lie scattered in memory, and look nothing up twice.
// It is one cache line: the loops visit jobs in fair order, which is not
// the order they lie in, and each visit costs a miss per line. Its
// priority and ID are in its jobKey.
type jobFacts struct {
	j   *model.Job
	u   *userList // its owner's list; u.q its queue
	run int64     // expected run time (estimator.runFor)
	// shape: for a valid one-group job, the shape of its tasks with no GPU
	// flavor, gang its gang size and topo its topology label
	// (dure.topos[topo-1]; 0: none): consider checks the placement memos
	// (the shape's unfit, or pass.topoFail) without reading the job.
	shape *shape
	// dem: the gang's quota demand with no GPU flavor, when ext < 0 (at
	// most two governed keys, none flavored); otherwise the demand is
	// dure.ext[ext:ext+nk] and the gang's GPUs, which also count against
	// a flavored key (needOf), dure.ext[ext+nk].
	dem  [2]int64
	ext  int32
	key  int32 // the base key index of its reason (planner.baseKeyIndex)
	gang int32
	// want: the GPU flavor a group asks for by constraint is
	// dure.wants[want-1]; 0: none; -1: read it from the job.
	want  int16
	flags factFlags
	topo  uint8
}

type factFlags uint8

const (
	factGPU       factFlags = 1 << iota // some group uses GPUs
	factValid                           // invalidJob is ""
	factDeps                            // it has dependencies (gate)
	factThrottled                       // an array element with a throttle
	factPreempted                       // others were preempted for it (Job.PreemptedBy)
	factWaiting                         // it is in preemptor.waiting
	factWhole                           // its gang is all its tasks
	factStarved                         // considered before fair order (starvedFirst)
)

// jobKey is a job's place in scheduling order (orderJobs): priority
// (higher first), submit time in Unix seconds and nanoseconds, ID, and its
// position in the input (here: in dure.facts).
type jobKey struct {
	prio int
	sec  int64
	nsec int32
	pos  int32
	id   model.JobID
}

// queuedJob is a job filed under its owner (userList.jobs): its order key
// and what the main loop needs of its facts, copied when it is filed, so
// that the main loop reads no facts: the expected run time, the gang's
// demand (when the facts hold it inline) and flags.
type queuedJob struct {
	jobKey
	run   int64
	dem   [2]int64
	flags factFlags
}

// jobKeyLess is cmpJobKey(*a, *b) < 0.
func jobKeyLess(a, b *jobKey) bool {
	switch {
	case a.prio != b.prio:
		return a.prio > b.prio
	case a.sec != b.sec:
		return a.sec < b.sec
	case a.nsec != b.nsec:
		return a.nsec < b.nsec
	case a.id != b.id:
		return a.id < b.id
	}
	return a.pos < b.pos
}

// sortQueued sorts an owner's jobs by cmpJobKey: a merge sort of
// insertion-sorted runs, its comparison inlined (the jobs of one owner are
// few, and sorting them is most of what ordering a long queue costs). buf
// is scratch, at least as long as ks.
func sortQueued(ks, buf []queuedJob) {
	const run = 12
	n := len(ks)
	for lo := 0; lo < n; lo += run {
		hi := min(lo+run, n)
		for i := lo + 1; i < hi; i++ {
			x := ks[i]
			j := i
			for j > lo && jobKeyLess(&x.jobKey, &ks[j-1].jobKey) {
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
				if jobKeyLess(&src[j].jobKey, &src[i].jobKey) {
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

func cmpJobKey(a, b jobKey) int {
	switch {
	case a.prio != b.prio:
		return cmp.Compare(b.prio, a.prio) // higher first
	case a.sec != b.sec:
		return cmp.Compare(a.sec, b.sec)
	case a.nsec != b.nsec:
		return cmp.Compare(a.nsec, b.nsec)
	case a.id != b.id:
		return cmp.Compare(a.id, b.id)
	}
	return cmp.Compare(a.pos, b.pos)
}

// gather works out the facts of the pending jobs, reading them in the
// order given (the order they lie in memory, mostly), and files the jobs
// that pass the gate under their owners (d.users, each owner's in
// scheduling order): the fair-share order only ever compares owners'
// next jobs, so each owner's jobs are sorted on their own, which is
// cheaper than one sort of the whole queue. Only a job listed twice needs
// the whole order (the first in it is kept).
func (d *dure) gather(pending []*model.Job) {
	pl, t := d.pl, d.tree
	nk := int32(len(t.keyNames))
	sc := pl.p.sc
	d.facts = grab(&sc.facts, len(pending))[:0]
	useExt := nk > int32(len(jobFacts{}.dem)) || t.flavored["gpu"]
	if useExt {
		d.ext = make([]int64, 0, len(pending)*int(nk+1))
	}
	var dem demand
	if !useExt {
		dem = make(demand, nk)
	}
	keys := grab(&sc.keys, len(pending))[:0]
	var users []*userList // in order of first sight
	// The owners' lists by queue name, then owner (one string hashed per
	// lookup, and only when the queue or owner changes from the last job).
	type queueUsers struct {
		q     *qnode
		users map[string]*userList
	}
	byQueue := map[string]*queueUsers{}
	var lastName string
	var lastQU *queueUsers
	var lastU *userList
	deps := false
	for at, j := range pending {
		if at%warmBatch == 0 {
			pl.warmed += warm(pending[at:min(at+warmBatch, len(pending))])
		}
		if j == nil {
			continue
		}
		pos := int32(len(d.facts))
		keys = append(keys, jobKey{prio: j.Priority, sec: j.SubmitTime.Unix(), nsec: int32(j.SubmitTime.Nanosecond()), pos: pos, id: j.ID})
		fa := jobFacts{j: j, ext: -1, key: -1}
		valid := invalidJob(j) == ""
		if valid {
			fa.flags |= factValid
		}
		if len(j.Dependencies) > 0 {
			fa.flags |= factDeps
			deps = true
		}
		if j.ArrayParent != 0 && j.ArrayThrottle > 0 {
			fa.flags |= factThrottled
		}
		if j.PreemptedBy != 0 && j.PreemptedBy != j.ID {
			fa.flags |= factPreempted
			d.anyPreempted = true
		}
		qname := j.Queue
		if qname == "" {
			qname = model.DefaultQueue
		}
		if lastU == nil || qname != lastName || j.Owner != lastU.owner {
			if lastQU == nil || qname != lastName {
				lastQU = byQueue[qname]
				if lastQU == nil {
					// q is nil for a queue not configured: made in
					// scheduling order below.
					lastQU = &queueUsers{q: t.byName[qname], users: map[string]*userList{}}
					byQueue[qname] = lastQU
				}
				lastName = qname
			}
			lastU = lastQU.users[j.Owner]
			if lastU == nil {
				lastU = d.fair.user(qname, j.Owner)
				lastU.q = lastQU.q
				lastQU.users[j.Owner] = lastU
				users = append(users, lastU)
			}
		}
		lastU.count++
		fa.u = lastU
		fa.run = pl.est.walltime(j) // the prediction below
		if useExt {
			fa.ext = int32(len(d.ext))
			d.ext = append(d.ext, make([]int64, nk+1)...)
			dem = d.ext[fa.ext : fa.ext+nk]
		} else {
			clear(dem)
		}
		var gpus int64
		want := ""
		left0 := j.GangSize()
		if left0 == j.TaskCount() {
			fa.flags |= factWhole
		}
		left := left0
		for gi := range j.Groups {
			g := &j.Groups[gi]
			n := int64(min(g.Count, left))
			left -= int(n)
			t.demandOf(&g.Resources, n, nil, dem)
			if g.Resources.GPUs > 0 {
				fa.flags |= factGPU
				gpus += g.Resources.GPUs * n
				if f := g.Constraints[gpuFlavorLabel]; f != "" {
					want = f
				}
			}
		}
		if useExt {
			d.ext[fa.ext+nk] = gpus
		} else {
			copy(fa.dem[:], dem)
		}
		if want != "" {
			fa.want = d.wantIndex(want)
		}
		if valid && len(j.Groups) == 1 {
			d.groupFacts(&fa, j, left0)
		}
		d.facts = append(d.facts, fa)
	}
	// Predictions: the owners' recent run times, one history scan for all.
	owners := make([]string, len(users))
	for i, u := range users {
		owners[i] = u.owner
	}
	for i, r := range pl.est.recentFor(owners) {
		users[i].recent = r
	}
	for i := range d.facts {
		if fa := &d.facts[i]; fa.u.recent != nil {
			fa.run = predictedFrom(fa.u.recent, fa.run)
		}
	}
	dups := false
	seen := newIDSet(keys, func(k jobKey) model.JobID { return k.id })
	for _, k := range keys {
		if !seen.add(k.id) {
			dups = true
			break
		}
	}
	if dups {
		// The whole order, keeping each ID's first job only.
		slices.SortFunc(keys, cmpJobKey)
		seen = newIDSet(keys, func(k jobKey) model.JobID { return k.id })
		keys = slices.DeleteFunc(keys, func(k jobKey) bool { return !seen.add(k.id) })
		for _, u := range users {
			u.count = 0
		}
		for _, k := range keys {
			d.facts[k.pos].u.count++
		}
	}
	// File the keys by owner (stably), then sort each owner's (already in
	// order with dups) and gate.
	byUser := grab(&sc.byUser, len(keys))
	at, most := 0, 0
	for _, u := range users {
		u.lo = at
		at += u.count
		most = max(most, u.count)
		u.count = u.lo // the next free slot
	}
	for _, k := range keys {
		fa := &d.facts[k.pos]
		u := fa.u
		byUser[u.count] = queuedJob{jobKey: k, run: fa.run, dem: fa.dem, flags: fa.flags}
		u.count++
	}
	var buf []queuedJob
	if !dups {
		buf = make([]queuedJob, most)
	}
	var unknown []*userList // owners in queues not configured
	queues := 0
	d.users = users[:0]
	for _, u := range users {
		js := byUser[u.lo:u.count]
		if !dups {
			sortQueued(js, buf)
		}
		w := len(js)
		if deps {
			w = 0
			for _, k := range js {
				if fa := &d.facts[k.pos]; fa.flags&factDeps != 0 && !pl.gate(fa.j) {
					continue
				}
				js[w] = k
				w++
			}
		}
		if w == 0 {
			continue
		}
		u.jobs = js[:w:w]
		d.users = append(d.users, u)
		if u.q == nil {
			unknown = append(unknown, u)
		}
	}
	// Queues not configured get their nodes in the scheduling order of
	// their first jobs, as they always have (the order of roots breaks
	// ties in pick).
	slices.SortFunc(unknown, func(a, b *userList) int { return cmpJobKey(a.jobs[0].jobKey, b.jobs[0].jobKey) })
	for _, u := range unknown {
		u.q = t.node(u.queue)
	}
	for _, u := range d.users {
		if !u.q.hasReady {
			u.q.hasReady = true
			queues++
		}
	}
	// Queue-level usage matters only when queues compete.
	d.queueLevel = queues > 1
}

// groupFacts fills in the shape, gang, topology and reason key of a valid
// one-group job whose gang size is gang.
func (d *dure) groupFacts(fa *jobFacts, j *model.Job, gang int) {
	pl := d.pl
	g := &j.Groups[0]
	spread := j.Placement == model.PlacementSpread
	var e *groupMemo
	if r := &g.Resources; len(r.Custom) == 0 && len(g.Constraints) <= 1 {
		k := groupMemoKey{cpu: r.MilliCPU, mem: r.MemoryBytes, gpu: r.GPUs, scratch: r.ScratchBytes, count: g.Count, gang: gang,
			name: pl.names.id(g.Name), topology: pl.topologies.id(j.Topology), spread: spread}
		h := uint64(k.cpu)*0x9e3779b97f4a7c15 ^ uint64(k.mem)*0xc2b2ae3d27d4eb4f ^ uint64(k.gpu)<<7 ^ uint64(k.count)*0x165667b19e3779f9 ^ uint64(k.gang)<<17 ^ uint64(k.name)<<29 ^ uint64(k.topology)<<41
		if spread {
			h ^= 0x27d4eb2f165667c5
		}
		if len(g.Constraints) == 1 {
			k.label, k.value = pl.p.oneConstraint(g)
			h ^= uint64(len(k.value))*0x27d4eb2f165667c5 ^ uint64(len(k.label))<<53
			if k.value != "" {
				h ^= uint64(k.value[len(k.value)-1]) << 13
			}
		}
		if d.groups == nil {
			d.groups, d.groupEpoch = pl.p.sc.groupMemo()
		}
		e = &d.groups[(h^h>>29)%groupMemoSize]
		if e.epoch == d.groupEpoch && e.k == k {
			fa.key, fa.shape, fa.gang, fa.topo = e.key, e.shape, e.gang, e.topo
			return
		}
		e.k, e.epoch = k, 0
	}
	s := pl.p.shapeFor(g, "", false)
	fa.key = pl.keyIndex(baseKey{s: s, name: g.Name, count: g.Count, gang: gang, topology: j.Topology, spread: spread}, j)
	if gang <= math.MaxInt32 {
		if spread {
			s = pl.p.shapeFor(g, "", true)
		}
		fa.shape, fa.gang = s, int32(gang)
		if j.Topology != "" {
			if fa.topo = d.topoIndex(j.Topology); fa.topo == 0 {
				fa.shape = nil // too many labels to number
			}
		}
	}
	if e != nil {
		e.key, e.shape, e.gang, e.topo, e.epoch = fa.key, fa.shape, fa.gang, fa.topo, d.groupEpoch
	}
}

// groupMemo remembers what groupFacts worked out for a plain group (no
// custom resources, at most one constraint). Pending jobs repeat a few group shapes:
// a direct-mapped table answers most without probing the maps. The table
// lives in the Scratch (it was a seventh of all the bytes a busy server
// allocated when each pass made its own); an entry holds for the pass
// whose epoch it carries (Scratch.groupMemo), since its key numbers names
// per pass.
type groupMemo struct {
	k     groupMemoKey
	epoch uint32 // 0: empty
	shape *shape
	key   int32
	gang  int32
	topo  uint8
}

// groupMemoKey is everything groupFacts reads of a plain group and its
// job (names numbered, as for baseKeyFast).
type groupMemoKey struct {
	cpu, mem, gpu, scratch int64
	count, gang            int
	name, topology         int32
	spread                 bool
	label, value           string // the one constraint, if any
}

const groupMemoSize = 1024

// gpuFlavorLabel is FlavorLabel("gpu").
const gpuFlavorLabel = "gpu.model"

// backfillItem is a job left for the backfill phase, with what its order
// needs (read while its facts were at hand).
type backfillItem struct {
	fi   int32
	id   model.JobID
	prio int
	run  int64
}

// backfillOrder sorts jobs, in place, by priority; among equal
// priorities, jobs expected to run less than τ (boundedSlowdownFloor) come
// first, shortest first, and the others keep their (fair) order. Very
// short jobs cost almost nothing to start and are the ones whose bounded
// slowdown waiting hurts most; the others keep the order that does not
// change with time, so backfill does not starve long jobs either. It is a
// stable sort by (priority, min(run, τ)): a counting sort by priority
// (through tmp, at least as long as jobs), then the short jobs of each
// priority moved to its front.
func (d *dure) backfillOrder(jobs, tmp []backfillItem) {
	if len(jobs) == 0 {
		return
	}
	// Number the distinct priorities (usually a few small ones: a table,
	// not a map, per job), higher first.
	const small = 64
	var smallLevel [small]int32 // level+1 of priority p in [0, small)
	var other map[int]int32     // the same for the rest
	var levels []int
	for i := range jobs {
		p := jobs[i].prio
		if 0 <= p && p < small {
			if smallLevel[p] == 0 {
				smallLevel[p] = -1
				levels = append(levels, p)
			}
		} else if _, ok := other[p]; !ok {
			if other == nil {
				other = map[int]int32{}
			}
			other[p] = -1
			levels = append(levels, p)
		}
	}
	slices.Sort(levels)
	slices.Reverse(levels)
	for i, p := range levels {
		if 0 <= p && p < small {
			smallLevel[p] = int32(i + 1)
		} else {
			other[p] = int32(i + 1)
		}
	}
	levelOf := func(p int) int32 {
		if 0 <= p && p < small {
			return smallLevel[p] - 1
		}
		return other[p] - 1
	}
	counts := make([]int, len(levels))
	if len(levels) == 1 {
		counts[0] = len(jobs)
	} else {
		for i := range jobs {
			counts[levelOf(jobs[i].prio)]++
		}
		next := make([]int, len(levels))
		for i := 1; i < len(levels); i++ {
			next[i] = next[i-1] + counts[i-1]
		}
		for _, it := range jobs {
			l := levelOf(it.prio)
			tmp[next[l]] = it
			next[l]++
		}
		copy(jobs, tmp[:len(jobs)])
	}
	var short []backfillItem
	at := 0
	for _, c := range counts {
		seg := jobs[at : at+c]
		at += c
		short = short[:0]
		for _, it := range seg {
			if it.run < boundedSlowdownFloor {
				short = append(short, it)
			}
		}
		if len(short) == 0 {
			continue
		}
		slices.SortStableFunc(short, func(a, b backfillItem) int { return cmpInt64(a.run, b.run) })
		// The long ones move back, in order, behind the short ones.
		w := len(seg)
		for i := len(seg) - 1; i >= 0; i-- {
			if seg[i].run >= boundedSlowdownFloor {
				w--
				seg[w] = seg[i]
			}
		}
		copy(seg, short)
	}
}

// borrows reports whether the job would take its queue q above its own
// nominal quota of a key the queue's tree governs, whatever GPU flavor it
// gets (a queue without a quota for a governed key borrows all it uses). A
// root queue never borrows: it has no one to borrow from.
func (d *dure) borrows(k *queuedJob, q *qnode) bool {
	if len(d.tree.keyNames) == 0 || q.parent == nil {
		return false
	}
	root := q.root
	fa := &d.facts[k.pos]
	flavors := anyFlavor
	if d.ext != nil {
		flavors = d.flavorsOf(fa) // flavored quotas
	}
	for _, f := range flavors {
		need := d.borrowBuf
		if d.ext != nil {
			need = d.needOf(fa, f, need)
		} else {
			copy(need, k.dem[:]) // no flavored quota: any node, the demand the key carries
		}
		over := false
		for k, x := range need {
			if x <= 0 || root.rs[k] == nil {
				continue
			}
			if r := q.rs[k]; r == nil || r.used+x > r.effN {
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
	// nodes: every node by name (schedulable first); built on first use
	// (nodeNamed), since only flavored quotas need it.
	nodes map[string]*model.Node
	// facts: the pending jobs (gather); ext holds their demands when
	// they do not fit in jobFacts; users: the owners' lists of jobs that
	// passed the gate; wants: the GPU flavors jobs ask for.
	facts        []jobFacts
	users        []*userList
	ext          []int64
	wants        []string
	topos        []string
	groups       *[groupMemoSize]groupMemo // groupFacts' memo
	groupEpoch   uint32                    // its entries' epoch in this pass
	queueLevel   bool                      // more than one queue has jobs ready
	anyPreempted bool                      // some pending job has factPreempted
	allocQ       []*qnode                  // allocQueue's answers
	// Scratch demands (needOf, tentDemand) and flavor lists, reused.
	needBuf, borrowBuf, actBuf demand
	roomy                      []string
	wanted                     map[string][]string
	tails                      *tailWatch // nil without Snapshot.Tails
}

func newDure(pl *planner) *dure {
	d := &dure{pl: pl, tree: newQueueTree(pl.queues)}
	d.needBuf, d.borrowBuf, d.actBuf = d.tree.newDemand(), d.tree.newDemand(), d.tree.newDemand()
	// Quota usage of live allocations, wherever they run (not of those being
	// stopped: their preemptor counts instead).
	if len(d.tree.keyNames) > 0 {
		dem := d.tree.newDemand()
		for k, a := range pl.s.Allocs {
			// A job being stopped no longer counts.
			if a == nil || a.Status.Terminal() || a.Desired == model.DesiredStop {
				continue
			}
			clear(dem)
			d.tree.demandOf(&a.Resources, 1, d.nodeNamed(a.Node), dem)
			d.tree.charge(d.allocQueue(k, a), dem, 1)
		}
	}
	var capacity usage
	for i := range pl.p.nodes {
		nd := &pl.p.nodes[i]
		capacity[0] += float64(nd.capCPU)
		capacity[1] += float64(nd.capMem)
		capacity[2] += float64(nd.capGPU)
	}
	d.fair = newFairState(pl.nowN, pl.cfg, capacity)
	return d
}

// allocQueue is the queue of the k-th allocation of the snapshot, a
// (looked up once per pass; made, if not configured, when first asked for,
// as tree.node does).
func (d *dure) allocQueue(k int, a *model.Allocation) *qnode {
	if d.allocQ == nil {
		d.allocQ = grab(&d.pl.p.sc.allocQ, len(d.pl.s.Allocs))
		clear(d.allocQ)
	}
	if q := d.allocQ[k]; q != nil {
		return q
	}
	q := d.tree.node(a.Queue)
	d.allocQ[k] = q
	return q
}

// arraysOf returns the running elements of job arrays, counted from the
// live allocations on first use: most passes have no array to throttle.
func (d *dure) arraysOf() *arrays {
	if d.arrays == nil {
		d.arrays = newArrays(d.pl.s.Allocs)
	}
	return d.arrays
}

// nodeNamed returns the node of that name (a schedulable one first), or
// nil when no quota is flavored: demandOf then never looks at nodes.
func (d *dure) nodeNamed(name string) *model.Node {
	if len(d.tree.flavored) == 0 {
		return nil
	}
	if d.nodes == nil {
		d.nodes = make(map[string]*model.Node, len(d.pl.s.Nodes))
		for _, n := range d.pl.s.Nodes {
			if n != nil {
				if o, dup := d.nodes[n.Name]; !dup || n.Schedulable() && !o.Schedulable() {
					d.nodes[n.Name] = n
				}
			}
		}
	}
	return d.nodes[name]
}

// maxPreemptAttempts bounds the jobs per pass that look for victims (the
// first ones in fair order that cannot start).
const maxPreemptAttempts = 8

// consider tries to start the job facts[fi] now; failing that, in the
// main phase, to make room by preemption or to reserve its start.
func (d *dure) consider(fi int32, id model.JobID, main bool) {
	d.considerFacts(&d.facts[fi], id, main)
}

// considerFacts is consider given the job's facts (or a copy of them).
func (d *dure) considerFacts(fa *jobFacts, id model.JobID, main bool) {
	pl := d.pl
	if d.tails != nil {
		d.tails.considering(pl, id)
	}
	j := fa.j
	if fa.flags&(factValid|factThrottled) == factValid|factThrottled {
		if why := d.arraysOf().throttled(j); why != "" {
			pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonArrayThrottle, Message: why}
			return
		}
	}
	leave := func(wrap func(model.Reason) model.Reason) { pl.leaveAs(j, id, fa.key, wrap) }
	if fa.flags&factValid == 0 {
		leave(nil)
		return
	}
	q := fa.u.q
	w := fa.run
	flavors := d.flavorsOf(fa)
	var quota *quotaBlock // the first quota that blocked it
	var blocker model.JobID
	roomy := d.roomy[:0] // flavors with quota room
	for _, f := range flavors {
		need := d.needOf(fa, f, d.needBuf)
		if ok, k := d.tree.admits(q, need); !ok {
			if quota == nil {
				quota = d.tree.blockMessage(q, k, need[k])
			}
			continue
		}
		roomy = append(roomy, f)
		var k int
		var b model.JobID
		if !d.failsAgain(fa, f) {
			if who, again := d.blockedAgain(fa, f, w); again {
				b = who
			} else {
				k, b = pl.place(j, placeOpts{flavor: f}, w)
				if k == 0 && b != 0 {
					d.noteBlocked(fa, f, w, b)
				}
			}
		}
		if k == 0 {
			if blocker == 0 {
				blocker = b
			}
			continue
		}
		actual := d.tentDemand()
		if ok, key := d.tree.admits(q, actual); !ok {
			pl.p.undo()
			if quota == nil {
				quota = d.tree.blockMessage(q, key, actual[key])
			}
			continue
		}
		d.start(fa, actual, w)
		return
	}
	d.roomy = roomy
	// While jobs are being stopped for it, it keeps their room; it
	// chooses no new victims before they have stopped, even if it would
	// not fit then (the cluster changed, or another preemptor came first):
	// then it goes first and may choose again.
	var e *earmark
	if fa.flags&factWaiting != 0 {
		e = d.pre.waiting[id]
	}
	if e != nil && len(e.stopping) > 0 {
		if d.pre.wait(j, q, flavors, w, e.stopping) {
			return
		}
		note := "; " + d.pre.waitMessage(e.stopping) + ", which will not be enough"
		leave = func(wrap func(model.Reason) model.Reason) {
			pl.leaveAs(j, id, fa.key, func(base model.Reason) model.Reason {
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
		leave(quota.wrap)
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
			leave(wrap)
			return
		}
	}
	leave(pl.blockedWrap(blocker))
}

// failsAgain reports whether placing the job (with GPU flavor f) now
// must fail, by the memos placement keeps (room only shrinks during a
// pass): tryJob's unfit (as many tasks of its shape did not fit earlier),
// or placeAny's topoFail (no domain held a gang as large). It reads no
// more than the job's facts.
func (d *dure) failsAgain(fa *jobFacts, f string) bool {
	s := fa.shape
	p := d.pl.p
	if s == nil || f != "" && fa.flags&factGPU != 0 || p.noMemo {
		return false
	}
	if fa.topo == 0 {
		return s.unfit >= 0 && int(fa.gang) > s.unfit
	}
	need, failed := p.topoFail[topoKey{s, d.topos[fa.topo-1]}]
	return failed && int(fa.gang) >= need
}

// blocked is a shape's last blocked placement of a gang size
// (shape.blocked): a job of gang tasks running until end fitted, but would
// have delayed the reservation of who, and did not fit around it either;
// changes and events date the pass and timeline state it saw.
type blocked struct {
	changes int
	events  int64
	gang    int32
	end     int64
	who     model.JobID
}

// blockedAgain reports whether placing a one-group job without topology
// or gang minimum (GPU flavor f, running w) must end as the last blocked
// placement of its shape did, and names the reservation it would delay.
// Nothing changed since (no task taken or given back, no timeline event),
// so the same tasks land on the same nodes; a job that runs at least as
// long dips into the reservation at least as deep, and fits around it no
// better (placeAvoiding's memo). With one reservation, it is the one
// delayed.
func (d *dure) blockedAgain(fa *jobFacts, f string, w int64) (model.JobID, bool) {
	s := fa.shape
	if s == nil || fa.topo != 0 || fa.flags&factWhole == 0 || f != "" && fa.flags&factGPU != 0 {
		return 0, false
	}
	pl := d.pl
	if len(pl.res) != 1 {
		return 0, false
	}
	for i := range s.blocked {
		m := &s.blocked[i]
		if m.gang == fa.gang {
			if m.changes != len(pl.p.changes) || m.events != pl.tl.lastID || pl.nowN+w < m.end {
				return 0, false
			}
			return m.who, true
		}
	}
	return 0, false
}

// noteBlocked records a blocked placement for blockedAgain.
func (d *dure) noteBlocked(fa *jobFacts, f string, w int64, who model.JobID) {
	s := fa.shape
	if s == nil || fa.topo != 0 || fa.flags&factWhole == 0 || f != "" && fa.flags&factGPU != 0 {
		return
	}
	pl := d.pl
	end := pl.nowN + w
	now := blocked{changes: len(pl.p.changes), events: pl.tl.lastID, gang: fa.gang, end: end, who: who}
	for i := range s.blocked {
		m := &s.blocked[i]
		if m.gang == fa.gang {
			if m.changes != now.changes || m.events != now.events || end < m.end {
				*m = now
			}
			return
		}
	}
	s.blocked = append(s.blocked, now)
}

// topoIndex numbers a topology label for jobFacts.topo (0: too many).
func (d *dure) topoIndex(label string) uint8 {
	for i, t := range d.topos {
		if t == label {
			return uint8(i + 1)
		}
	}
	if len(d.topos) >= math.MaxUint8 {
		return 0
	}
	d.topos = append(d.topos, label)
	return uint8(len(d.topos))
}

// anyFlavor is the flavor list of a job that may use any node.
var anyFlavor = []string{""}

// flavorsOf lists the GPU flavors to try for a job, in order; [""] means
// any node. The lists are shared: callers must not change them.
func (d *dure) flavorsOf(fa *jobFacts) []string {
	if fa.flags&factGPU == 0 {
		return anyFlavor
	}
	fs := d.tree.gpuFlavors(fa.u.q)
	if len(fs) == 0 {
		return anyFlavor
	}
	want := ""
	switch {
	case fa.want > 0:
		want = d.wants[fa.want-1]
	case fa.want < 0:
		want = wantedFlavor(fa.j)
	}
	if want != "" {
		// Also when the queue has no quota for it: admits() says so.
		if w, ok := d.wanted[want]; ok {
			return w
		}
		if d.wanted == nil {
			d.wanted = map[string][]string{}
		}
		w := []string{want}
		d.wanted[want] = w
		return w
	}
	return fs
}

// wantedFlavor is the GPU flavor j asks for by constraint (the last group
// with GPUs that names one), or "".
func wantedFlavor(j *model.Job) string {
	want := ""
	for gi := range j.Groups {
		if g := &j.Groups[gi]; g.Resources.GPUs > 0 {
			if f := g.Constraints[gpuFlavorLabel]; f != "" {
				want = f
			}
		}
	}
	return want
}

// wantIndex numbers a wanted flavor for jobFacts.want.
func (d *dure) wantIndex(f string) int16 {
	for i, w := range d.wants {
		if w == f {
			return int16(i + 1)
		}
	}
	if len(d.wants) >= math.MaxInt16 || len(d.wants) >= 64 {
		return -1 // too many to search: read it from the job
	}
	d.wants = append(d.wants, f)
	return int16(len(d.wants))
}

// needOf is the quota demand of a job's gang with GPUs of flavor f, in buf.
func (d *dure) needOf(fa *jobFacts, f string, buf demand) demand {
	nk := int32(len(d.tree.keyNames))
	if fa.ext < 0 {
		copy(buf, fa.dem[:nk])
		return buf
	}
	copy(buf, d.ext[fa.ext:fa.ext+nk])
	if f != "" && fa.flags&factGPU != 0 {
		if k, ok := d.tree.keyIdx["gpu/"+f]; ok {
			buf[k] += d.ext[fa.ext+nk]
		}
	}
	return buf
}

// gangDemand is the quota demand of j's gang with GPUs of flavor f, in a
// new demand (needOf's arithmetic, for preemption's what-ifs).
func (d *dure) gangDemand(j *model.Job, f string) demand {
	dem := d.tree.newDemand()
	left := j.GangSize()
	for gi := range j.Groups {
		g := &j.Groups[gi]
		n := int64(min(g.Count, left))
		left -= int(n)
		d.tree.demandOf(&g.Resources, n, nil, dem)
		if f != "" && g.Resources.GPUs > 0 {
			if k, ok := d.tree.keyIdx["gpu/"+f]; ok {
				dem[k] += g.Resources.GPUs * n
			}
		}
	}
	return dem
}

// tentDemand is the quota demand of the tentative placement, node by node
// (in a buffer reused by the next call).
func (d *dure) tentDemand() demand {
	dem := d.actBuf
	clear(dem)
	p := d.pl.p
	for _, tp := range p.tent {
		d.tree.demandOf(&tp.shape.req, 1, p.nodes[tp.node].node, dem)
	}
	return dem
}

// start commits the job's tentative placement and accounts for it.
func (d *dure) start(fa *jobFacts, dem demand, w int64) {
	var u usage
	for _, tp := range d.pl.p.tent {
		x := usageOf(&tp.shape.req, 1)
		for r := 0; r < 3; r++ {
			u[r] += x[r]
		}
	}
	j, q := fa.j, fa.u.q
	d.pl.commit(j, w)
	d.tree.charge(q, dem, 1)
	d.fair.started(q, fa.u, &u)
	if j.ArrayParent != 0 {
		d.arraysOf().add(j.ArrayParent, j.ID)
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
			if best != nil {
				best.recycle(pl.p.sc, true)
			}
			best, bestAt, bestEnd = fp, at, end
		} else if ok {
			fp.recycle(pl.p.sc, true)
		}
	}
	if best == nil {
		return nil
	}
	r := pl.record(best, j, bestAt, bestEnd)
	best.recycle(pl.p.sc, true)
	return r
}
