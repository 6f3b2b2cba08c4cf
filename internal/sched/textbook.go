package sched

import (
	"fmt"
	"time"

	"github.com/durehq/dure/internal/model"
)

// scheduleTextbook runs FIFO, EASY or conservative backfilling exactly as
// the literature defines them, so that simulations compare with published
// numbers:
//
//   - Queue order is submit time, then ID. Priority, queues, quotas and
//     fair share are ignored, and nothing is preempted.
//   - A job runs for its walltime (its queue's default, or
//     Config.DefaultWalltime, when it has none); running jobs end at
//     StartedAt + walltime.
//   - FIFO starts jobs in order until one does not fit; that one and every
//     job behind it wait.
//   - EASY gives the first job that does not fit a reservation at the
//     earliest time it fits; a later job starts now only if it fits now and
//     does not delay that reservation.
//   - Conservative does the same with a reservation for every job that does
//     not fit, each made in queue order around the ones before it.
//
// A job that could never fit (no node has the labels, no node is big
// enough, or the gang is larger than the cluster) is skipped, not waited
// for. Dependencies and array throttles hold under every policy: a job
// that may not start yet is not in line at all.
func scheduleTextbook(s *Snapshot, now time.Time, cfg Config, sc *Scratch) *Plan {
	pl := newPlannerIn(sc, s, now, cfg, false, false)
	pol := cfg.policy()
	depth := 1
	switch pol {
	case PolicyConservative:
		depth = -1
	case PolicyFIFO:
		depth = 0
	}
	var head *model.Job
	arr := newArrays(s.Allocs)
	jobs := orderJobsIn(sc, s.Pending, false)
	for at, j := range jobs {
		if at%warmBatch == 0 {
			pl.warmed += warm(jobs[at:min(at+warmBatch, len(jobs))])
		}
		if invalidJob(j) != "" {
			pl.leave(j, nil)
			continue
		}
		if !pl.gate(j) {
			continue // not eligible yet: it blocks nothing
		}
		if why := arr.throttled(j); why != "" {
			pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonArrayThrottle, Message: why}
			continue
		}
		if head != nil {
			pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonPriority, Message: fmt.Sprintf(
				"waiting behind job %s, the first in line (fifo: the first job that does not fit blocks the queue)", head.DisplayName())}
			continue
		}
		w := pl.est.runFor(j)
		k, blocker := pl.place(j, placeOpts{}, w)
		if k > 0 {
			pl.commit(j, w)
			if j.ArrayParent != 0 {
				arr.add(j.ArrayParent, j.ID)
			}
			continue
		}
		if pol == PolicyFIFO {
			if pl.p.everFits(j) {
				head = j
			}
			pl.leave(j, nil)
			continue
		}
		if depth < 0 || len(pl.res) < depth {
			if r, ok := pl.reserve(j, placeOpts{}, w); ok {
				pl.leave(j, pl.reservedWrap(r))
				continue
			}
		}
		pl.leave(j, pl.blockedWrap(blocker))
	}
	pl.finish()
	pl.recycle()
	return pl.plan
}

// warmBatch is how many jobs warm reads ahead of the loop.
const warmBatch = 32

// warm reads a word of each part of a job that the loop reads (the job's
// groups, gang size and dependencies; the first group's count and
// constraints), for the jobs' sake, not the sum's: the jobs lie scattered
// in memory and come in queue order, and these reads, independent of each
// other, overlap, where the loop would wait for each job in turn.
func warm(jobs []*model.Job) int {
	n := 0
	for _, j := range jobs {
		if j == nil {
			continue
		}
		n += j.MinTasks + len(j.Dependencies)
		if len(j.Groups) > 0 {
			n += j.Groups[0].Count + len(j.Groups[0].Constraints)
		}
	}
	return n
}

// leave records that j stays pending; its reason is the analysis of the
// final state, passed through wrap when set.
func (pl *planner) leave(j *model.Job, wrap func(model.Reason) model.Reason) {
	pl.leaveAs(j, j.ID, pl.baseKeyIndex(j), wrap)
}

// leaveAs is leave with j's ID and base key index (baseKeyIndex) already
// known.
func (pl *planner) leaveAs(j *model.Job, id model.JobID, key int32, wrap func(model.Reason) model.Reason) {
	pl.later = append(pl.later, laterReason{job: j, id: id, key: key, wrap: wrap})
}

// baseKeyIndex numbers j's base key: jobs with equal base keys share one
// analysis, the reason of the first job numbered with it; -1: j is
// analysed on its own.
func (pl *planner) baseKeyIndex(j *model.Job) int32 {
	k, ok := baseKeyOf(pl.p, j)
	if !ok {
		return -1
	}
	return pl.keyIndex(k, j)
}

// keyIndex numbers base key k, of job j. The key's strings are numbered
// first (names repeat from job to job), so the key hashes without them.
func (pl *planner) keyIndex(k baseKey, j *model.Job) int32 {
	fk := baseKeyFast{s: k.s, name: pl.names.id(k.name), topology: pl.topologies.id(k.topology), count: k.count, gang: k.gang, spread: k.spread}
	i, found := pl.baseKeys[fk]
	if !found {
		if pl.baseKeys == nil {
			pl.baseKeys = map[baseKeyFast]int32{}
		}
		i = int32(len(pl.baseJobs))
		pl.baseKeys[fk] = i
		pl.baseJobs = append(pl.baseJobs, j)
	}
	return i
}

// baseKeyFast is a baseKey with its strings numbered (stringIDs).
type baseKeyFast struct {
	s              *shape
	name, topology int32
	count, gang    int
	spread         bool
}

// stringIDs numbers strings, remembering the last one asked for.
type stringIDs struct {
	ids  map[string]int32
	last string
	id0  int32 // the last one's number, +1 (0: none yet)
}

func (n *stringIDs) id(s string) int32 {
	if n.id0 > 0 && s == n.last {
		return n.id0 - 1
	}
	id, ok := n.ids[s]
	if !ok {
		if n.ids == nil {
			n.ids = map[string]int32{}
		}
		id = int32(len(n.ids))
		n.ids[s] = id
	}
	n.last, n.id0 = s, id+1
	return id
}

// finish computes the reasons of the jobs left pending.
func (pl *planner) finish() {
	base := make([]model.Reason, len(pl.baseJobs))
	done := make([]bool, len(pl.baseJobs))
	// A reason already given stands (the first, if a job was left twice).
	// The few given before finish are looked up in a set of their own, not
	// in the plan's map, which grows to every pending job.
	var given map[model.JobID]struct{}
	if len(pl.plan.Reasons) > 0 {
		given = make(map[model.JobID]struct{}, len(pl.plan.Reasons))
		for id := range pl.plan.Reasons {
			given[id] = struct{}{}
		}
	}
	seen := newIDSet(pl.later, func(l laterReason) model.JobID { return l.id })
	for _, l := range pl.later {
		if !seen.add(l.id) {
			continue
		}
		if given != nil {
			if _, set := given[l.id]; set {
				continue
			}
		}
		var r model.Reason
		if l.key >= 0 {
			if !done[l.key] {
				base[l.key] = pl.baseReason(pl.baseJobs[l.key])
				done[l.key] = true
			}
			r = base[l.key]
		} else {
			r = pl.baseReason(l.job)
		}
		if l.wrap != nil {
			r = l.wrap(r)
		}
		pl.plan.Reasons[l.id] = r
	}
}

// baseReason is the analysis of why j does not fit the final state.
func (pl *planner) baseReason(j *model.Job) model.Reason {
	r := pl.p.reason(j)
	if r.Code == model.ReasonResources || r.Code == model.ReasonGang {
		if tr, ok := pl.p.topologyReason(j); ok {
			r = tr
		}
	}
	return r
}

// baseKey is everything baseReason reads of a valid one-group job: jobs
// with equal keys get the same reason, computed once (queues of thousands
// of jobs have a few hundred distinct keys).
type baseKey struct {
	s           *shape // the group's shape, any flavor, packed
	name        string
	count, gang int
	topology    string
	spread      bool
}

func baseKeyOf(p *pass, j *model.Job) (baseKey, bool) {
	if len(j.Groups) != 1 || invalidJob(j) != "" {
		return baseKey{}, false
	}
	g := &j.Groups[0]
	return baseKey{s: p.shapeFor(g, "", false), name: g.Name, count: g.Count, gang: j.GangSize(),
		topology: j.Topology, spread: j.Placement == model.PlacementSpread}, true
}

// reservedWrap turns a job's shortage reason into "reserved, starts at".
func (pl *planner) reservedWrap(r *resv) func(model.Reason) model.Reason {
	return func(base model.Reason) model.Reason {
		return model.Reason{Code: model.ReasonReserved, Message: fmt.Sprintf(
			"%s; reserved: estimated start %s on %s", base.Message, pl.eta(r.start), plural(len(r.nodes), "node"))}
	}
}

// blockedWrap explains a job that would have fit now but for a
// reservation (blocker != 0); otherwise the analysis stands.
func (pl *planner) blockedWrap(blocker model.JobID) func(model.Reason) model.Reason {
	if blocker == 0 {
		return nil
	}
	if w := pl.blockedWraps[blocker]; w != nil {
		return w
	}
	var r *resv
	for _, x := range pl.res {
		if x.job.ID == blocker {
			r = x
			break
		}
	}
	name := blocker.String()
	if r != nil {
		name = r.job.DisplayName() // 123_7 for an array element
	}
	msg := fmt.Sprintf("would fit now but would delay job %s", name)
	if r != nil {
		msg += fmt.Sprintf(", reserved to start at %s", pl.eta(r.start))
	}
	w := func(model.Reason) model.Reason { return model.Reason{Code: model.ReasonBackfill, Message: msg} }
	if r != nil {
		// Thousands of jobs may wait on one reservation: one message.
		if pl.blockedWraps == nil {
			pl.blockedWraps = map[model.JobID]func(model.Reason) model.Reason{}
		}
		pl.blockedWraps[blocker] = w
	}
	return w
}

// eta renders a future instant for people: "14:05:00 (in 35m)", with the
// date when it is not today.
func (pl *planner) eta(at int64) string {
	t := time.Unix(0, at).In(pl.now.Location())
	clock := t.Format("15:04:05")
	y1, m1, d1 := t.Date()
	if y0, m0, d0 := pl.now.Date(); y0 != y1 || m0 != m1 || d0 != d1 {
		clock = t.Format("2006-01-02 15:04:05")
	}
	return fmt.Sprintf("%s (in %s)", clock, humanDuration(time.Duration(at-pl.nowN)))
}

// humanDuration renders a duration compactly: 45s, 35m, 2h5m, 3d4h.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int64(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int64(d.Round(time.Minute)/time.Minute))
	case d < 24*time.Hour:
		d = d.Round(time.Minute)
		h, m := d/time.Hour, (d%time.Hour)/time.Minute
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	}
	d = d.Round(time.Hour)
	days, h := d/(24*time.Hour), (d%(24*time.Hour))/time.Hour
	if h == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, h)
}
