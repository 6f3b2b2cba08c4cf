package sched

import "slices"

// Starved wide jobs (PolicyDure; README.md, "Starved wide jobs"). A job
// that needs half the cluster or more starts only after a drain, and the
// cluster drains only for the job that holds the reservation. When queues
// compete, that is the next job of the queue below its share, again and
// again, so a wide job of the queue over its share can wait days while
// narrow jobs backfill around it, and a wide job of a few seconds ends with
// the largest bounded slowdown of all. Once such a job's expected bounded
// slowdown, (wait + expected run) / max(expected run, τ), reaches
// starvedSlowdown, it is considered before fair order (priority, then
// submit time) and gets the reservation if it cannot start now. The
// threshold is high, so the order stays fixed from pass to pass for almost
// every job (a reservation that moves wastes the room drained for it): a
// 10-second job crosses it after 3h20m of waiting, a one-hour job after 50
// days. With one queue (no other has jobs ready or running), its own
// order, which does not change with time, holds the reservation and no
// queue passes it over; the rule would only move the reservation away from
// its job (on the overloaded Lublin-1 trace that cost 0.1 to 0.4 points of
// utilization), so it is off. Jobs that would borrow quota are left to
// fair order (they come after the others).

// starvedSlowdown is the expected bounded slowdown at which a wide job
// goes before fair order.
const starvedSlowdown = 1200

// wideShare is the share of the cluster (of its cores, memory or GPUs) at
// which a job counts as wide.
const wideShare = 0.5

// starvedFirst considers the starved wide jobs, in scheduling order, while
// a reservation is left to make; each is marked factStarved in its
// owner's list so that the main loop skips it.
func (d *dure) starvedFirst(reserving func() bool) {
	if !reserving() || !d.queuesCompete() {
		return
	}
	var found []*queuedJob
	now := d.pl.nowN
	for _, u := range d.users {
		for i := range u.jobs {
			k := &u.jobs[i]
			if k.flags&(factWaiting|factValid) != factValid {
				continue // a preemptor, considered already; or invalid
			}
			wait := max(now-(k.sec*1e9+int64(k.nsec)), 0)
			run := max(k.run, 0)
			if float64(wait+run) < starvedSlowdown*float64(max(run, boundedSlowdownFloor)) {
				continue
			}
			if !d.wide(&d.facts[k.pos]) || d.borrows(k, u.q) {
				continue
			}
			found = append(found, k)
		}
	}
	slices.SortFunc(found, func(a, b *queuedJob) int { return cmpJobKey(a.jobKey, b.jobKey) })
	for _, k := range found {
		if !reserving() {
			return
		}
		k.flags |= factStarved
		d.consider(k.pos, k.id, true)
	}
}

// wide reports whether the job's gang needs at least wideShare of the
// cluster's cores, memory or GPUs.
func (d *dure) wide(fa *jobFacts) bool {
	need := gangNeed(fa.j)
	x := [3]int64{need.cpu, need.mem, need.gpu}
	c := &d.fair.capacity
	for r := range 3 {
		if c[r] > 0 && float64(x[r]) >= wideShare*c[r] {
			return true
		}
	}
	return false
}

// queuesCompete reports whether more than one queue has jobs ready or
// running.
func (d *dure) queuesCompete() bool {
	if d.queueLevel {
		return true
	}
	n := 0
	for _, q := range d.tree.byName {
		if q.hasReady || q.liveAllocs > 0 {
			if n++; n > 1 {
				return true
			}
		}
	}
	return false
}
