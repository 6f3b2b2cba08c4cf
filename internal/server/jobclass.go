package server

import (
	"cmp"
	"slices"

	"github.com/durehq/dure/internal/model"
)

// jobClass is the pending jobs of one sched.ClassKey, ascending ID. Under a
// backlog a class holds most of what waits, and every pass changes a few
// of its jobs: those placed leave from the front, new submissions join at
// the back, and jobs given a reason are updated where they are. A pass
// therefore costs what changed, not what waits: members is changed in
// place, and only a change elsewhere (a job leaving from the middle, an
// old job coming back) rebuilds it.
//
// What the scheduler and a plan get of a class (its jobs, a tail of them)
// is read only during the pass that got it, before the next change.
type jobClass struct {
	key string
	// members and jobs are parallel (jobs[i] == members[i].j); a tail is
	// handed over as jobs[heads:], not copied.
	members []classMember
	jobs    []*model.Job
	// ordered: submit times never decrease along members, so any tail
	// follows its heads (tailFollows). False may be stale: tailFollows
	// looks again.
	ordered bool
	// codes counts the members by logged reason code.
	codes map[string]int
}

type classMember struct {
	id     model.JobID
	submit int64  // SubmitTime in Unix nanoseconds
	code   string // Reason.Code: the job's logged reason code
	j      *model.Job
}

// classChange is what one write did to a class: members that left
// (ascending ID), members that joined (ascending ID) and members whose job
// changed but who stay (ascending ID).
type classChange struct {
	gone    []model.JobID
	added   []classMember
	updated []classMember
}

func memberID(e classMember) model.JobID { return e.id }

// apply brings the class up to date with ch.
func (cl *jobClass) apply(ch *classChange) {
	if cl.codes == nil {
		cl.codes = map[string]int{}
	}
	for _, m := range ch.updated {
		i, _ := slices.BinarySearchFunc(cl.members, m.id, func(e classMember, id model.JobID) int { return cmp.Compare(e.id, id) })
		old := cl.members[i]
		cl.count(old.code, -1)
		cl.count(m.code, 1)
		if old.submit != m.submit {
			cl.ordered = false
		}
		cl.members[i], cl.jobs[i] = m, m.j
	}
	// The common change: the first members leave, newer jobs join at the
	// back. Anything else rebuilds the class.
	k := len(ch.gone)
	prefix := k <= len(cl.members)
	for i := 0; prefix && i < k; i++ {
		prefix = cl.members[i].id == ch.gone[i]
	}
	behind := len(ch.added) > 0 && len(cl.members) > k && ch.added[0].id <= cl.members[len(cl.members)-1].id
	if !prefix || behind {
		cl.rebuild(mergeByID(cl.members, make([]classMember, 0, len(cl.members)+len(ch.added)), ch.gone, ch.added, memberID))
		return
	}
	for _, e := range cl.members[:k] {
		cl.count(e.code, -1)
	}
	// Dropped entries are cleared so the array does not keep their jobs;
	// the next growth of the slice leaves the array behind.
	clear(cl.members[:k])
	clear(cl.jobs[:k])
	cl.members, cl.jobs = cl.members[k:], cl.jobs[k:]
	if len(ch.added) == 0 {
		return
	}
	if n := len(cl.members); n == 0 {
		cl.ordered = true
	} else if ch.added[0].submit < cl.members[n-1].submit {
		cl.ordered = false
	}
	cl.ordered = cl.ordered && submitsAscend(ch.added)
	for _, m := range ch.added {
		cl.count(m.code, 1)
		cl.members = append(cl.members, m)
		cl.jobs = append(cl.jobs, m.j)
	}
}

// rebuild makes members the class's members and recounts what is kept
// about them.
func (cl *jobClass) rebuild(members []classMember) {
	cl.members = members
	cl.jobs = make([]*model.Job, len(members))
	clear(cl.codes)
	for i, m := range members {
		cl.jobs[i] = m.j
		cl.count(m.code, 1)
	}
	cl.ordered = submitsAscend(members)
}

func (cl *jobClass) count(code string, d int) {
	if n := cl.codes[code] + d; n != 0 {
		cl.codes[code] = n
	} else {
		delete(cl.codes, code)
	}
}

// submitsAscend reports whether submit times never decrease along m.
func submitsAscend(m []classMember) bool {
	for i := 1; i < len(m); i++ {
		if m[i].submit < m[i-1].submit {
			return false
		}
	}
	return true
}

// tailFollows reports whether every member from heads on was submitted no
// earlier than every member before it (IDs ascend, so ties are in order).
func (cl *jobClass) tailFollows(heads int) bool {
	if !cl.ordered {
		cl.ordered = submitsAscend(cl.members)
	}
	if cl.ordered {
		return true
	}
	m := cl.members
	last := m[0].submit
	for _, e := range m[1:heads] {
		last = max(last, e.submit)
	}
	for _, e := range m[heads:] {
		if e.submit < last {
			return false
		}
	}
	return true
}

// tailReasonChanges adds to changes the members from heads on whose
// logged code is not the tail's reason's (code, interned). They are
// counted first and then looked for from the back, where jobs that have
// no reason yet join: when every member has the tail's reason already,
// nothing is read.
func (cl *jobClass) tailReasonChanges(heads int, code string, reason model.Reason, changes map[model.JobID]model.Reason) {
	tail := cl.members[heads:]
	same := cl.codes[code]
	for _, e := range cl.members[:heads] {
		if e.code == code {
			same--
		}
	}
	for i, differ := len(tail)-1, len(tail)-same; i >= 0 && differ > 0; i-- {
		if tail[i].code != code {
			changes[tail[i].id] = reason
			differ--
		}
	}
}
