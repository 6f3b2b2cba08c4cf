package sched

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/durehq/dure/internal/model"
)

// ErrNotPending means Explain was asked about a job that is not in the
// snapshot's pending list.
var ErrNotPending = errors.New("job is not pending")

// Explanation is what `dure explain ID` shows for a pending job.
type Explanation struct {
	JobID model.JobID
	// StartsNow: the scheduler would place it in this pass.
	StartsNow bool
	// Reason is why it waits (empty when StartsNow).
	Reason model.Reason
	// EstimatedStart is when it is expected to start: its reservation in
	// the plan, or else the start a plan with a reservation for every
	// blocked job gives it (conservative backfill); zero when it cannot
	// be estimated (waiting on quota, dependencies or preempted jobs'
	// grace periods, or it never fits).
	EstimatedStart time.Time
	// Sooner lists changes to the job that would let it start earlier,
	// each tried in a what-if run, earliest first.
	Sooner []Alternative
}

// Alternative is one what-if change and its outcome.
type Alternative struct {
	// Change says what to change, for people: "ask for 4 GPUs per task
	// instead of 8", "run on gpu.model=A100", "set walltime 30m instead
	// of 1h".
	Change string
	// Start is the estimated start with the change (now when it would
	// start at once).
	Start time.Time
	// Job is the changed job.
	Job *model.Job
}

// Explain says why job id is pending, when it is expected to start, and
// what would let it start sooner. It is pure like Schedule (it runs
// Schedule several times on modified copies of the snapshot: fewer GPUs or
// tasks, each other GPU flavor, a shorter walltime) and does not mutate s.
func Explain(s *Snapshot, now time.Time, cfg Config, id model.JobID) (*Explanation, error) {
	var job *model.Job
	for _, j := range s.Pending {
		if j != nil && j.ID == id {
			job = j
			break
		}
	}
	if job == nil {
		return nil, fmt.Errorf("explain job %d: %w", uint64(id), ErrNotPending)
	}
	e := &Explanation{JobID: id}
	base, reason, now0 := estimate(s, now, cfg, id)
	if now0 {
		e.StartsNow, e.EstimatedStart = true, now
		return e, nil
	}
	e.Reason, e.EstimatedStart = reason, base
	switch reason.Code {
	case model.ReasonDependency, model.ReasonDependencyNever, model.ReasonArrayThrottle, model.ReasonPreempting:
		return e, nil // waiting on something other than room: no change to the job helps
	}
	alts := alternatives(s, job)
	if reason.Code == model.ReasonBackfill {
		if alt, ok := fitBeforeReservations(s, now, cfg, job); ok {
			alts = append(alts, alt)
		}
	}
	for _, alt := range alts {
		start, _, startsNow := estimate(withJob(s, alt.Job), now, cfg, id)
		if startsNow {
			start = now
		}
		if start.IsZero() || !base.IsZero() && !start.Before(base) {
			continue
		}
		alt.Start = start
		e.Sooner = append(e.Sooner, alt)
	}
	slices.SortStableFunc(e.Sooner, func(a, b Alternative) int { return a.Start.Compare(b.Start) })
	return e, nil
}

// estimate runs the policy and returns the job's estimated start (zero if
// none), its reason, and whether it starts now.
func estimate(s *Snapshot, now time.Time, cfg Config, id model.JobID) (time.Time, model.Reason, bool) {
	plan := Schedule(s, now, cfg)
	for _, p := range plan.Placements {
		if p.JobID == id {
			return now, model.Reason{}, true
		}
	}
	reason := plan.Reasons[id]
	for _, r := range plan.Reservations {
		if r.JobID == id {
			return r.Start, reason, false
		}
	}
	switch reason.Code {
	case model.ReasonQuota, model.ReasonDependency, model.ReasonDependencyNever, model.ReasonArrayThrottle, model.ReasonPreempting, model.ReasonNoFit, model.ReasonConstraints, model.ReasonNoNodes:
		return time.Time{}, reason, false
	}
	// Beyond the reservation depth: plan a reservation for every blocked
	// job (in the same order) to see where this one would land.
	deep := cfg
	if cfg.policy() == PolicyDure {
		deep.ReservationDepth = -1
	} else {
		deep.Policy = PolicyConservative
	}
	for _, r := range Schedule(s, now, deep).Reservations {
		if r.JobID == id {
			return r.Start, reason, false
		}
	}
	return time.Time{}, reason, false
}

// withJob is s with the pending job of the same ID replaced by j.
func withJob(s *Snapshot, j *model.Job) *Snapshot {
	c := *s
	c.Pending = make([]*model.Job, len(s.Pending))
	for i, p := range s.Pending {
		if p != nil && p.ID == j.ID {
			c.Pending[i] = j
		} else {
			c.Pending[i] = p
		}
	}
	return &c
}

// alternatives lists the what-if changes worth trying for j.
func alternatives(s *Snapshot, j *model.Job) []Alternative {
	var out []Alternative
	tasks := j.TaskCount()
	gpus := int64(0)
	for _, g := range j.Groups {
		gpus = max(gpus, g.Resources.GPUs)
	}
	// Fewer GPUs per task.
	if gpus > 1 {
		c := j.Copy()
		for gi := range c.Groups {
			if c.Groups[gi].Resources.GPUs > 1 {
				c.Groups[gi].Resources.GPUs /= 2
			}
		}
		out = append(out, Alternative{Change: fmt.Sprintf("ask for %d GPUs per task instead of %d", gpus/2, gpus), Job: c})
	}
	// Fewer tasks.
	if tasks > 1 && len(j.Groups) == 1 {
		c := j.Copy()
		c.Groups[0].Count = tasks / 2
		if c.MinTasks > c.Groups[0].Count {
			c.MinTasks = 0
		}
		change := fmt.Sprintf("run %d tasks instead of %d", tasks/2, tasks)
		if tasks/2 == 1 {
			change = fmt.Sprintf("run 1 task instead of %d", tasks)
		}
		if gpus > 0 {
			change += fmt.Sprintf(" (%d GPUs instead of %d)", int64(tasks/2)*gpus, int64(tasks)*gpus)
		}
		out = append(out, Alternative{Change: change, Job: c})
	}
	// Another GPU flavor.
	if gpus > 0 {
		current := ""
		for _, g := range j.Groups {
			if f := g.Constraints[FlavorLabel("gpu")]; f != "" {
				current = f
			}
		}
		var flavors []string
		for _, n := range s.Nodes {
			if n != nil && n.Schedulable() {
				// Only labelled flavors: a constraint matches labels.
				if f := n.Labels[FlavorLabel("gpu")]; f != "" && f != current && !slices.Contains(flavors, f) {
					flavors = append(flavors, f)
				}
			}
		}
		slices.Sort(flavors)
		for _, f := range flavors {
			c := j.Copy()
			for gi := range c.Groups {
				if c.Groups[gi].Resources.GPUs > 0 {
					if c.Groups[gi].Constraints == nil {
						c.Groups[gi].Constraints = map[string]string{}
					}
					c.Groups[gi].Constraints[FlavorLabel("gpu")] = f
				}
			}
			out = append(out, Alternative{Change: fmt.Sprintf("run on %s=%s", FlavorLabel("gpu"), f), Job: c})
		}
	}
	// A shorter walltime.
	if j.Walltime > time.Minute {
		c := j.Copy()
		c.Walltime = (j.Walltime / 2).Round(time.Minute)
		out = append(out, Alternative{Change: fmt.Sprintf("set walltime %s instead of %s", humanDuration(c.Walltime), humanDuration(j.Walltime)), Job: c})
	}
	return out
}

// fitBeforeReservations is, for a job that would fit now but would delay a
// reserved job, the walltime that ends before the earliest reservation:
// the change a user of backfill looks for ("set walltime 29m instead of
// 2h"), which halving the walltime often misses.
func fitBeforeReservations(s *Snapshot, now time.Time, cfg Config, j *model.Job) (Alternative, bool) {
	var first time.Time
	for _, r := range Schedule(s, now, cfg).Reservations {
		if r.JobID != j.ID && r.Start.After(now) && (first.IsZero() || r.Start.Before(first)) {
			first = r.Start
		}
	}
	gap := first.Sub(now).Truncate(time.Minute)
	if first.IsZero() || gap < time.Minute || (j.Walltime > 0 && gap >= j.Walltime) || gap == (j.Walltime/2).Round(time.Minute) {
		return Alternative{}, false
	}
	c := j.Copy()
	c.Walltime = gap
	change := fmt.Sprintf("set walltime %s instead of %s", humanDuration(gap), humanDuration(j.Walltime))
	if j.Walltime == 0 {
		change = fmt.Sprintf("set walltime %s instead of none", humanDuration(gap))
	}
	return Alternative{Change: change, Job: c}, true
}
