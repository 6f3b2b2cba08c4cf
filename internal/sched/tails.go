package sched

import (
	"maps"
	"slices"
	"strconv"

	"github.com/durehq/dure/internal/model"
)

// A backlog is mostly runs of identical jobs: an array's elements, a sweep,
// a benchmark's thousands of `true`. Of such a run only the first jobs can
// start in a pass; the rest wait for the same reason. A pass still had to
// order, try and explain every one of them, so under a backlog of 30,000
// its cost grew to tens of milliseconds while it placed a handful.
//
// The caller may therefore hand in a run's first jobs as pending and the
// rest as a Tail. The pass runs on the first jobs; if, from the moment it
// considered the tail's After (the last of them) to its end, nothing
// changed (nothing placed, reserved or preempted, After included), every
// job of the tail would have met exactly what After met: the same state,
// the same memo, later in the same orders. Then they share After's reason
// and the plan lists them as a TailReason. Otherwise the pass runs again
// with the tails' jobs pending, so a plan is always what the full input
// gives (TestTailsGiveTheFullPlan).

// Tail is a run of pending jobs of one class (ClassKey) that come after
// the pending job After in their owner's order: each has a later
// (SubmitTime, ID) than After and every job of the class in Pending.
type Tail struct {
	After model.JobID
	Jobs  []*model.Job
}

// TailReason is the reason shared by a tail's jobs: its After's.
type TailReason struct {
	After  model.JobID
	Jobs   []*model.Job // the Tail's, not copied
	Reason model.Reason
}

// ClassKey returns the key of j's class: jobs with equal keys are alike in
// everything the scheduler reads of a pending job but their ID and submit
// time, so they take the same place in every order but for those two.
// ok is false for jobs never put in a class: those with dependencies, an
// array throttle, or preempted by another job (each changes from pass to
// pass or with other jobs).
func ClassKey(j *model.Job) (key string, ok bool) {
	if len(j.Dependencies) > 0 || j.ArrayThrottle > 0 || j.PreemptedBy != 0 {
		return "", false
	}
	b := make([]byte, 0, 96)
	str := func(s string) { b = strconv.AppendInt(b, int64(len(s)), 10); b = append(b, ':'); b = append(b, s...) }
	num := func(n int64) { b = strconv.AppendInt(b, n, 10); b = append(b, ',') }
	str(j.Owner)
	str(j.Queue)
	str(j.Topology)
	str(j.Placement)
	num(int64(j.Priority))
	num(int64(j.Walltime))
	num(int64(j.MinTasks))
	num(int64(j.ArrayParent))
	num(int64(len(j.Groups)))
	for gi := range j.Groups {
		g := &j.Groups[gi]
		str(g.Name)
		num(int64(g.Count))
		r := &g.Resources
		num(r.MilliCPU)
		num(r.MemoryBytes)
		num(r.GPUs)
		num(r.ScratchBytes)
		num(int64(len(r.Custom)))
		for _, k := range slices.Sorted(maps.Keys(r.Custom)) {
			str(k)
			num(r.Custom[k])
		}
		num(int64(len(g.Constraints)))
		for _, k := range slices.Sorted(maps.Keys(g.Constraints)) {
			str(k)
			str(g.Constraints[k])
		}
	}
	return string(b), true
}

// withTails is s with its tails' jobs pending and no tails.
func withTails(s *Snapshot) *Snapshot {
	c := *s
	n := len(s.Pending)
	for _, t := range s.Tails {
		n += len(t.Jobs)
	}
	c.Pending = make([]*model.Job, 0, n)
	c.Pending = append(c.Pending, s.Pending...)
	for _, t := range s.Tails {
		c.Pending = append(c.Pending, t.Jobs...)
	}
	c.Tails = nil
	return &c
}

// tailWatch notes, for a pass with tails, how much had changed when each
// tail's After was first considered.
type tailWatch struct {
	at map[model.JobID]int // After → changes()+1 when first considered
}

func newTailWatch(tails []Tail) *tailWatch {
	if len(tails) == 0 {
		return nil
	}
	w := &tailWatch{at: make(map[model.JobID]int, len(tails))}
	for _, t := range tails {
		w.at[t.After] = 0
	}
	return w
}

// changes counts what a pass did that can change another job's fate:
// placements, reservations, preemptions.
func (pl *planner) changes() int {
	return len(pl.plan.Placements) + len(pl.res) + len(pl.plan.Preemptions)
}

// considering notes that job id is being considered.
func (w *tailWatch) considering(pl *planner, id model.JobID) {
	if at, ok := w.at[id]; ok && at == 0 {
		w.at[id] = pl.changes() + 1
	}
}

// tailReasons gives each tail its After's reason, once the pass (reasons
// included) is done; ok is false if some tail's jobs might have fared
// otherwise than their After.
func (w *tailWatch) tailReasons(pl *planner, tails []Tail) ([]TailReason, bool) {
	end := pl.changes() + 1
	out := make([]TailReason, 0, len(tails))
	for _, t := range tails {
		r, left := pl.plan.Reasons[t.After]
		if w.at[t.After] != end || !left {
			return nil, false
		}
		out = append(out, TailReason{After: t.After, Jobs: t.Jobs, Reason: r})
	}
	return out, true
}

// tailHoldsPreemptor reports whether a tail holds, or follows, a job that
// others are being stopped or were requeued for (Allocation.PreemptedBy,
// Job.PreemptedBy): such a job goes before all others, so it must be
// pending, and its reason is its own.
func tailHoldsPreemptor(s *Snapshot) bool {
	var preemptors map[model.JobID]bool
	note := func(id model.JobID) {
		if id != 0 {
			if preemptors == nil {
				preemptors = map[model.JobID]bool{}
			}
			preemptors[id] = true
		}
	}
	for _, a := range s.Allocs {
		if a != nil {
			note(a.PreemptedBy)
		}
	}
	for _, j := range s.Pending {
		note(j.PreemptedBy) // tail jobs have none (ClassKey)
	}
	if preemptors == nil {
		return false
	}
	for _, t := range s.Tails {
		if preemptors[t.After] { // its reason speaks of its victims
			return true
		}
		for _, j := range t.Jobs {
			if preemptors[j.ID] {
				return true
			}
		}
	}
	return false
}
