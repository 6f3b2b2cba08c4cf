package sched

import (
	"fmt"

	"github.com/durehq/dure/internal/model"
)

// depName is how users know the job a dependency names: 123_7 for an
// array element (Snapshot.DependencyNames), else its ID.
func (pl *planner) depName(id model.JobID) string {
	if n := pl.s.DependencyNames[id]; n != "" {
		return n
	}
	return id.String()
}

// gate checks what must hold before a job may be considered at all, whatever
// the policy: its dependencies are satisfied. A job that fails gets its
// reason here and is not considered; a dependency that can never be
// satisfied gets ReasonDependencyNever (the server fails the job).
func (pl *planner) gate(j *model.Job) bool {
	var waiting []string
	for _, d := range j.Dependencies {
		st, known := pl.s.DependencyStates[d.JobID]
		if !known {
			name := pl.depName(d.JobID)
			pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonDependencyNever, Message: fmt.Sprintf(
				"%s:%s can never be satisfied: job %s is unknown", d.Type, name, name)}
			return false
		}
		ok, never := d.Satisfied(st)
		if never {
			name := pl.depName(d.JobID)
			why := fmt.Sprintf("job %s %s", name, st)
			switch d.Type {
			case model.AfterOK, model.AfterNotOK, model.AfterAny:
			default:
				why = fmt.Sprintf("unknown dependency type %q (want afterok, afterany or afternotok)", d.Type)
			}
			pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonDependencyNever, Message: fmt.Sprintf(
				"%s:%s can never be satisfied: %s", d.Type, name, why)}
			return false
		}
		if !ok {
			waiting = append(waiting, fmt.Sprintf("job %s (%s, %s)", pl.depName(d.JobID), d.Type, st))
		}
	}
	if len(waiting) > 0 {
		msg := "waiting for " + waiting[0]
		if len(waiting) > 1 {
			msg = fmt.Sprintf("waiting for %s and %d more", waiting[0], len(waiting)-1)
		}
		pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonDependency, Message: msg}
		return false
	}
	return true
}

// arrays counts running elements per job array (from live allocations, and
// jobs started in this pass) for throttles (--array A-B%N).
type arrays struct {
	running map[model.JobID]map[model.JobID]bool
}

func newArrays(allocs []*model.Allocation) *arrays {
	a := &arrays{running: map[model.JobID]map[model.JobID]bool{}}
	for _, al := range allocs {
		if al == nil || al.Status.Terminal() || al.ArrayParent == 0 {
			continue
		}
		a.add(al.ArrayParent, al.JobID)
	}
	return a
}

func (a *arrays) add(parent, job model.JobID) {
	m := a.running[parent]
	if m == nil {
		m = map[model.JobID]bool{}
		a.running[parent] = m
	}
	m[job] = true
}

// throttled explains why j, an array element, may not start now, or "".
func (a *arrays) throttled(j *model.Job) string {
	if j.ArrayParent == 0 || j.ArrayThrottle <= 0 {
		return ""
	}
	if n := len(a.running[j.ArrayParent]); n >= j.ArrayThrottle {
		elements := "elements"
		if n == 1 {
			elements = "element"
		}
		return fmt.Sprintf("array %d runs %d %s at once, its limit (%%%d)", uint64(j.ArrayParent), n, elements, j.ArrayThrottle)
	}
	return ""
}
