package sched

import (
	"time"

	"github.com/durehq/dure/internal/model"
)

// Snapshot is the scheduler's read-only view of the cluster. Schedule never
// mutates it or anything it points to.
type Snapshot struct {
	// Nodes is every known node, in any status; only Schedulable ones
	// (ready and not draining) receive placements. Names are unique.
	Nodes []*model.Node
	// Allocs is the live allocations (status not terminal): each holds its
	// resources and GPU indices on its node. Terminal ones are ignored.
	Allocs []*model.Allocation
	// Pending is the jobs waiting to be placed, in any order. Schedule orders
	// them itself (see Schedule); a job ID listed twice is considered once.
	Pending []*model.Job
	// Queues is the queue tree (PolicyDure): quotas, cohorts, weights,
	// default walltimes. A job naming a queue not listed here is in an
	// unlimited root queue of that name.
	Queues []*model.Queue
	// History is recently finished jobs (the caller keeps a bounded window,
	// e.g. the last few days or thousands of jobs), for runtime predictions
	// and fair-share usage decay. Any order gives the same plan; sorted by
	// end time then ID, it spares every pass a sort.
	History []model.FinishedJob
	// DependencyStates gives the state of every job a pending job depends
	// on. A dependency on a job missing here can never be satisfied.
	DependencyStates map[model.JobID]model.JobState
	// DependencyNames gives how users know the array elements among those
	// jobs ("123_7"), for reasons; a job not listed is named by its ID.
	DependencyNames map[model.JobID]string
	// Tails are more pending jobs, each run like jobs already in Pending
	// (tails.go): Schedule plans as if they were in Pending, but lists
	// them in Plan.Tails rather than in Plan.Reasons when they share
	// their After's reason. Optional; no job may be listed twice.
	Tails []Tail
}

// Placement puts one task of a job on one node.
type Placement struct {
	JobID     model.JobID
	Group     string
	TaskIndex int // 0-based over all groups of the job, in group order
	Node      string
	Resources model.Resources // the per-task request of its group
	// GPUIndices are concrete device indices on Node (from Node.GPUs[i].Index),
	// never shared with a live allocation or another placement.
	GPUIndices []int
}

// Plan is the outcome of one scheduling pass.
type Plan struct {
	// Placements holds, job after job in scheduling order, every task of each
	// job placed in this pass: a job's placements are contiguous and complete.
	Placements []Placement
	// Reasons has an entry for every pending job not placed in this plan, and
	// for no other job, except the jobs of Tails.
	Reasons map[model.JobID]model.Reason
	// Tails gives the jobs of Snapshot.Tails their reason, the same for a
	// whole tail, when all of them were left as their After was. When
	// some tail's jobs might not be, the plan holds all of them in
	// Placements and Reasons instead, and Tails is empty.
	Tails []TailReason
	// Preemptions are running jobs to stop so that waiting jobs can start
	// (PolicyDure only).
	Preemptions []Preemption
	// Reservations are the planned starts of blocked jobs, in the order they
	// were made (FIFO makes none).
	Reservations []Reservation
}

// Schedule places the pending jobs that start now, chooses preemptions,
// reserves the starts of blocked jobs, and explains every job it leaves
// pending, under cfg.Policy (README.md has the policies). Every policy
// places a job all-or-nothing (or its gang minimum), on the best feasible
// nodes (filters, then scorers, README.md), never overcommitting a node;
// every job left pending gets a Reason computed against the state after
// the plan, with numbers in the message. now is the only clock the
// scheduler sees. Schedule does not mutate s.
//
// A caller that schedules again and again may keep a Scratch and call its
// Schedule instead: the same plans, with less garbage.
func Schedule(s *Snapshot, now time.Time, cfg Config) *Plan {
	return schedule(s, now, cfg, &Scratch{})
}

func schedule(s *Snapshot, now time.Time, cfg Config, sc *Scratch) *Plan {
	if len(s.Tails) > 0 && (cfg.policy() != PolicyDure || cfg.firstFit || tailHoldsPreemptor(s)) {
		s = withTails(s) // tails are PolicyDure's
	}
	switch cfg.policy() {
	case PolicyFIFO, PolicyEASY, PolicyConservative:
		return scheduleTextbook(s, now, cfg, sc)
	}
	if cfg.firstFit {
		return scheduleFirstFit(s)
	}
	if plan, ok := scheduleDure(s, now, cfg, sc); ok {
		return plan
	}
	plan, _ := scheduleDure(withTails(s), now, cfg, sc)
	return plan
}

// scheduleFirstFit is the placement engine alone: jobs by priority, then
// submit time and ID, each placed if it fits now, no time, queues or
// reservations (the property tests hold it to the naive reference).
func scheduleFirstFit(s *Snapshot) *Plan {
	p := newPass(s.Nodes, s.Allocs)
	jobs := orderJobs(s.Pending, true)
	plan := &Plan{Reasons: make(map[model.JobID]model.Reason)}
	var unplaced []*model.Job
	for _, j := range jobs {
		if !p.placeJob(j, &plan.Placements) {
			unplaced = append(unplaced, j)
		}
	}
	for _, j := range unplaced {
		plan.Reasons[j.ID] = p.reason(j)
	}
	return plan
}

// orderJobs returns the pending jobs in scheduling order without duplicate
// IDs: by priority (higher first) when byPriority is set, then submit time,
// then ID. The input slice is not reordered.
func orderJobs(pending []*model.Job, byPriority bool) []*model.Job {
	return orderJobsIn(&Scratch{}, pending, byPriority)
}

// orderJobsIn is orderJobs with its memory taken from sc (the slice it
// returns too: valid until sc's next pass).
func orderJobsIn(sc *Scratch, pending []*model.Job, byPriority bool) []*model.Job {
	// Sort flat keys without pointers (no chasing, no write barriers while
	// sorting), then look the jobs up by position.
	es := grab(&sc.keys, len(pending))[:0]
	for i, j := range pending {
		if j != nil {
			prio := j.Priority
			if !byPriority {
				prio = 0
			}
			es = append(es, jobKey{prio, j.SubmitTime.Unix(), int32(j.SubmitTime.Nanosecond()), int32(i), j.ID})
		}
	}
	sortJobKeys(es, grab(&sc.keyBuf, len(es)))
	// A job listed twice keeps its first place in scheduling order.
	jobs := grab(&sc.jobs, len(es))[:0]
	seen := newIDSet(es, func(e jobKey) model.JobID { return e.id })
	for _, e := range es {
		if seen.add(e.id) {
			jobs = append(jobs, pending[e.pos])
		}
	}
	return jobs
}

// sortJobKeys sorts ks by jobKeyLess (buf is scratch as long as ks):
// sortQueued's merge sort, for this key (the comparison inlined; textbook
// policies order the whole queue). The three copies (sortQueued,
// sortJobKeys, sortReleaseKeys) are on purpose: one generic merge sort with
// the comparison as a method of a type parameter sorted 100,000 job keys
// 45% slower (17.2 against 11.9 ms), the call going through the generic
// dictionary instead of being inlined.
func sortJobKeys(ks, buf []jobKey) {
	const run = 12
	n := len(ks)
	for lo := 0; lo < n; lo += run {
		hi := min(lo+run, n)
		for i := lo + 1; i < hi; i++ {
			x := ks[i]
			j := i
			for j > lo && jobKeyLess(&x, &ks[j-1]) {
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
				if jobKeyLess(&src[j], &src[i]) {
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

// idSet is a set of job IDs: a bitmap over their range when IDs are dense
// (the usual case: the state store numbers jobs), else a map.
type idSet struct {
	lo   model.JobID
	bits []uint64
	m    map[model.JobID]struct{}
}

func newIDSet[T any](xs []T, id func(T) model.JobID) *idSet {
	s := &idSet{}
	if len(xs) == 0 {
		return s
	}
	lo, hi := id(xs[0]), id(xs[0])
	for _, x := range xs {
		lo, hi = min(lo, id(x)), max(hi, id(x))
	}
	if uint64(hi-lo) < 64*uint64(len(xs)) {
		s.lo, s.bits = lo, make([]uint64, uint64(hi-lo)/64+1)
	} else {
		s.m = make(map[model.JobID]struct{}, len(xs))
	}
	return s
}

// add inserts id and reports whether it was new.
func (s *idSet) add(id model.JobID) bool {
	if s.m != nil || s.bits == nil {
		if s.m == nil {
			s.m = map[model.JobID]struct{}{}
		}
		if _, dup := s.m[id]; dup {
			return false
		}
		s.m[id] = struct{}{}
		return true
	}
	i := uint64(id - s.lo)
	w, b := i/64, uint64(1)<<(i%64)
	if s.bits[w]&b != 0 {
		return false
	}
	s.bits[w] |= b
	return true
}
