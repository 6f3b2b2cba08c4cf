package sched

import (
	"fmt"

	"github.com/durehq/dure/internal/model"
)

// gate checks what must hold before a job may be considered at all, whatever
// the policy: its dependencies are satisfied. A job that fails gets its
// reason here and is not considered; a dependency that can never be
// satisfied gets ReasonDependencyNever (the server fails the job).
func (pl *planner) gate(j *model.Job) bool {
	var waiting []string
	for _, d := range j.Dependencies {
		st, known := pl.s.DependencyStates[d.JobID]
		if !known {
			pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonDependencyNever, Message: fmt.Sprintf(
				"%s:%d can never be satisfied: job %d is unknown", d.Type, uint64(d.JobID), uint64(d.JobID))}
			return false
		}
		ok, never := d.Satisfied(st)
		if never {
			why := fmt.Sprintf("job %d %s", uint64(d.JobID), st)
			switch d.Type {
			case model.AfterOK, model.AfterNotOK, model.AfterAny:
			default:
				why = fmt.Sprintf("unknown dependency type %q (want afterok, afterany or afternotok)", d.Type)
			}
			pl.plan.Reasons[j.ID] = model.Reason{Code: model.ReasonDependencyNever, Message: fmt.Sprintf(
				"%s:%d can never be satisfied: %s", d.Type, uint64(d.JobID), why)}
			return false
		}
		if !ok {
			waiting = append(waiting, fmt.Sprintf("job %d (%s, %s)", uint64(d.JobID), d.Type, st))
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
		return fmt.Sprintf("array %d runs %d of at most %d elements at once", uint64(j.ArrayParent), n, j.ArrayThrottle)
	}
	return ""
}
