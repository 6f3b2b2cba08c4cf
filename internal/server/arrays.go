package server

import (
	"slices"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
)

// withArrayDependencies hands the scheduler, which judges a dependency by
// one job's state, the element that decides each dependency on a whole
// array (model.ArrayDependencyVerdict): a failed element for afterok, a
// running or pending one while the array runs, and so on. Jobs without such
// dependencies pass through; the others are copied, never changed in place.
func withArrayDependencies(snap *state.Snapshot, pending []*model.Job) []*model.Job {
	type key struct {
		array model.JobID
		typ   model.DependencyType
	}
	var decided map[key]model.JobID
	var out []*model.Job // a copy of pending, once a job in it changes
	for i, j := range pending {
		has := false
		for _, d := range j.Dependencies {
			has = has || d.Array
		}
		if !has {
			continue
		}
		if decided == nil {
			decided = map[key]model.JobID{}
		}
		c := *j
		c.Dependencies = make([]model.Dependency, len(j.Dependencies))
		for di, d := range j.Dependencies {
			if !d.Array {
				c.Dependencies[di] = d
				continue
			}
			k := key{d.JobID, d.Type}
			id, ok := decided[k]
			if !ok {
				elems := snap.ArrayElements(d.JobID)
				states := make([]model.JobState, len(elems))
				for ei, e := range elems {
					states[ei] = e.State
				}
				// An array that is gone entirely stays named by its own
				// ID, which the scheduler then finds unknown: never.
				id = d.JobID
				if _, _, at := model.ArrayDependencyVerdict(d.Type, states); at >= 0 {
					id = elems[at].ID
				}
				decided[k] = id
			}
			c.Dependencies[di] = model.Dependency{Type: d.Type, JobID: id}
		}
		if out == nil {
			out = slices.Clone(pending)
		}
		out[i] = &c
	}
	if out == nil {
		return pending
	}
	return out
}
