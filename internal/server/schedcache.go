package server

import (
	"cmp"
	"slices"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/state"
)

// schedCache keeps the two parts of the scheduler's input that grow with
// the cluster's past and backlog, the pending jobs and the history window,
// up to date from the store's job change feed, so that a pass under a
// backlog does not walk every pending job and the last historyWindow
// finished jobs again (a third of a pass's cost). It gives what
// schedInput gives, but for most jobs of runs of identical ones, handed
// over as tails (TestSchedCacheMatchesSchedInput); it lives in the
// leader's scheduling loop, one pass at a time.
type schedCache struct {
	seq uint64 // the store's write number the cache is at; 0: read everything
	// window is the history window: the historyWindow highest-ID finished
	// jobs that ran, ascending ID; full tells whether more such jobs exist
	// below it (then a job leaving the window needs a fresh read).
	window []histEntry
	full   bool
	// history is window in the order recentHistory gives (end time, then
	// ID).
	history []model.FinishedJob
	// The previous pass's slices, whose memory the next change reuses
	// (the history alone is 160 kB): a slice handed to the scheduler
	// stays unchanged until the pass after next.
	windowSpare  []histEntry
	historySpare []model.FinishedJob

	// The pending jobs, split for the scheduler (sched.Tail): loose
	// holds those in no class, ascending ID; classes the others by
	// sched.ClassKey, each ascending ID; classOf finds a job's class.
	loose, looseSpare []*model.Job
	classes           map[string]*jobClass
	classOf           map[model.JobID]*jobClass
	// retrying counts, by class key, the loose jobs in their retry
	// backoff that are of the class (retryKey: each one's key).
	retrying map[string]int
	retryKey map[model.JobID]string
	// heads is how many of a class's first jobs a pass gets pending; the
	// rest go in a tail (set from the last pass's placements).
	heads int
	// tailed is, by After, the tails the last split made: their class
	// and members.
	tailed map[model.JobID]tailed
	// codes interns the members' reason codes: comparing two interned
	// strings compares their pointers.
	codes map[string]string
}

func (c *schedCache) intern(code string) string {
	if v, ok := c.codes[code]; ok {
		return v
	}
	if c.codes == nil {
		c.codes = map[string]string{}
	}
	c.codes[code] = code
	return code
}

// tailed is a tail split made: its class, whose members from heads on
// are the tail.
type tailed struct {
	cl    *jobClass
	heads int
}

// minHeads is the fewest jobs of a class a pass gets pending: more than a
// small cluster's free slots, so that the last of them is left waiting
// and the tail behind it can share its reason.
const minHeads = 64

// classKey is the job's class, if it may be in one: sched.ClassKey, and
// no retry backoff (holdBackoff's, which the server applies).
func classKey(j *model.Job) (string, bool) {
	if !j.EligibleAt.IsZero() {
		return "", false
	}
	return sched.ClassKey(j)
}

// snapshot returns a snapshot of store and brings the cache up to it.
func (c *schedCache) snapshot(store *state.Store) *state.Snapshot {
	snap, changed, seq, ok := store.SnapshotWithJobChanges(c.seq)
	if !ok || !c.update(snap, changed) {
		c.reload(snap)
	}
	c.seq = seq
	return snap
}

// input is the scheduler's input for snap, the cache's last snapshot, as
// schedInput(snap, now) gives it.
func (c *schedCache) input(snap *state.Snapshot, now time.Time) (in *sched.Snapshot, held map[model.JobID]model.Reason, wake time.Time) {
	pending, tails := c.split()
	pending, held, wake = holdBackoff(pending, now)
	pending = withArrayDependencies(snap, pending)
	states, names := dependencyStates(snap, pending)
	in = &sched.Snapshot{Nodes: snap.Nodes(), Allocs: snap.LiveAllocs(), Pending: pending, Queues: snap.Queues(),
		History: c.history, DependencyStates: states, DependencyNames: names, Tails: tails}
	return in, held, wake
}

// split gives the pending jobs as the scheduler gets them: each class's
// first jobs pending with the loose ones, the rest of it as a tail. A
// class whose later IDs were submitted earlier (clocks of two leaders)
// is all pending: a tail must come after its class's pending jobs in
// (SubmitTime, ID) order.
func (c *schedCache) split() ([]*model.Job, []sched.Tail) {
	heads := max(c.heads, minHeads)
	n := len(c.loose)
	for _, cl := range c.classes {
		n += min(len(cl.members), heads)
	}
	pending := make([]*model.Job, 0, n)
	pending = append(pending, c.loose...)
	var tails []sched.Tail
	clear(c.tailed)
	for _, cl := range c.classes {
		if len(cl.members) <= heads || c.retrying[cl.key] > 0 || !cl.tailFollows(heads) {
			pending = append(pending, cl.jobs...)
			continue
		}
		pending = append(pending, cl.jobs[:heads]...)
		after := cl.members[heads-1].id
		// Capped: an append by a reader cannot reach the class's array.
		tails = append(tails, sched.Tail{After: after, Jobs: cl.jobs[heads:len(cl.jobs):len(cl.jobs)]})
		if c.tailed == nil {
			c.tailed = map[model.JobID]tailed{}
		}
		c.tailed[after] = tailed{cl, heads}
	}
	// The classes' order is the map's; the scheduler's plan does not
	// depend on it.
	return pending, tails
}

// reload reads the pending jobs and the history window from snap.
func (c *schedCache) reload(snap *state.Snapshot) {
	c.loose, c.classes, c.classOf = nil, map[string]*jobClass{}, map[model.JobID]*jobClass{}
	c.retrying, c.retryKey = nil, nil
	c.classify(snap.JobsInState(model.JobPending), nil)
	c.window = c.window[:0:0]
	c.full = false
	snap.FinishedJobs(func(j *model.Job) bool {
		if ran(j) {
			if len(c.window) == historyWindow {
				c.full = true
				return false
			}
			c.window = append(c.window, histEntry{mod: j.ModifyIndex, f: finishedJob(j)})
		}
		return true
	})
	slices.Reverse(c.window)
	c.history = historyOrder(c.window)
}

// update applies the changes of the jobs named in changed (as they are in
// snap) to the cache. It returns false if the cache cannot follow them
// (a job left a full history window) and must be reloaded.
func (c *schedCache) update(snap *state.Snapshot, changed []model.JobID) bool {
	if len(changed) == 0 {
		return true
	}
	slices.Sort(changed)
	changed = slices.Compact(changed)
	jobs := make([]*model.Job, len(changed))
	for i, id := range changed {
		jobs[i] = snap.Job(id) // nil when deleted
	}
	// Pending: the changed jobs leave, those still pending come back in
	// order.
	var added []*model.Job
	for _, j := range jobs {
		if j != nil && j.State == model.JobPending {
			added = append(added, j)
		}
	}
	c.classify(added, changed)

	// History window: find what leaves it and what enters it.
	var gone map[model.JobID]bool // left the window or changed
	var add []histEntry           // entered the window or changed, ascending ID
	for i, id := range changed {
		j := jobs[i]
		at, inWindow := slices.BinarySearchFunc(c.window, id, func(e histEntry, id model.JobID) int { return cmp.Compare(e.f.ID, id) })
		qualifies := j != nil && ran(j)
		switch {
		case inWindow && !qualifies:
			if c.full {
				return false // the job below the window would move in
			}
		case inWindow && c.window[at].mod == j.ModifyIndex:
			continue
		case inWindow:
		case qualifies && (!c.full || id > c.window[0].f.ID):
			add = append(add, histEntry{mod: j.ModifyIndex, f: finishedJob(j)})
			continue
		default:
			continue
		}
		if gone == nil {
			gone = map[model.JobID]bool{}
		}
		gone[id] = true
		if qualifies {
			add = append(add, histEntry{mod: j.ModifyIndex, f: finishedJob(j)})
		}
	}
	if gone == nil && len(add) == 0 {
		return true
	}
	window := c.windowSpare[:0]
	ai := 0
	for _, e := range c.window {
		for ai < len(add) && add[ai].f.ID < e.f.ID {
			window = append(window, add[ai])
			ai++
		}
		if !gone[e.f.ID] {
			window = append(window, e)
		}
	}
	window = append(window, add[ai:]...)
	if over := len(window) - historyWindow; over > 0 {
		for _, e := range window[:over] {
			if gone == nil {
				gone = map[model.JobID]bool{}
			}
			gone[e.f.ID] = true
		}
		window = window[:copy(window, window[over:])]
		c.full = true
	}
	c.windowSpare, c.window = c.window, window
	// The history in its order: the old one less what left, merged with
	// what entered (mostly jobs that just ended, so at the end).
	slices.SortFunc(add, func(a, b histEntry) int { return historyCompare(a.f, b.f) })
	history := c.historySpare[:0]
	ai = 0
	for _, f := range c.history {
		if gone[f.ID] {
			continue
		}
		for ai < len(add) && historyCompare(add[ai].f, f) < 0 {
			if !gone[add[ai].f.ID] || inWindow(window, add[ai]) {
				history = append(history, add[ai].f)
			}
			ai++
		}
		history = append(history, f)
	}
	for ; ai < len(add); ai++ {
		if !gone[add[ai].f.ID] || inWindow(window, add[ai]) {
			history = append(history, add[ai].f)
		}
	}
	c.historySpare, c.history = c.history, history
	return true
}

// histEntry is a job of the history window and the modify index it was
// read at.
type histEntry struct {
	mod uint64
	f   model.FinishedJob
}

// inWindow reports whether e (not some other version of its job) is in
// window.
func inWindow(window []histEntry, e histEntry) bool {
	at, ok := slices.BinarySearchFunc(window, e.f.ID, func(w histEntry, id model.JobID) int { return cmp.Compare(w.f.ID, id) })
	return ok && window[at].mod == e.mod
}

// historyCompare is the order of the scheduler's history: by end time,
// then ID. It is the order the scheduler visits the history in
// (sched.Snapshot.History), so a pass need not sort it; jobs that end in
// one write share their end time.
func historyCompare(a, b model.FinishedJob) int {
	if c := a.EndTime.Compare(b.EndTime); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// historyOrder is window (ascending ID) in the order of the scheduler's
// history (historyCompare).
func historyOrder(window []histEntry) []model.FinishedJob {
	out := make([]model.FinishedJob, len(window))
	for i, e := range window {
		out[i] = e.f
	}
	slices.SortFunc(out, historyCompare)
	return out
}

// classify brings loose and the classes up to date: the jobs named in
// changed (ascending) leave or are updated where they are, the pending
// jobs added (ascending ID, each named in changed unless from a reload)
// come in.
func (c *schedCache) classify(added []*model.Job, changed []model.JobID) {
	if c.classes == nil {
		c.classes, c.classOf = map[string]*jobClass{}, map[model.JobID]*jobClass{}
	}
	if c.retrying == nil {
		c.retrying, c.retryKey = map[string]int{}, map[model.JobID]string{}
	}
	var touched map[*jobClass]*classChange
	touch := func(cl *jobClass) *classChange {
		if touched == nil {
			touched = map[*jobClass]*classChange{}
		}
		ch := touched[cl]
		if ch == nil {
			ch = &classChange{}
			touched[cl] = ch
		}
		return ch
	}
	var loose []*model.Job
	// file puts job id, now j (nil: no longer pending), where it belongs:
	// loose, or its class, where it stays if it was there.
	file := func(id model.JobID, j *model.Job) {
		var cl *jobClass
		var m classMember
		if j != nil {
			if key, ok := classKey(j); ok {
				if cl = c.classes[key]; cl == nil {
					cl = &jobClass{key: key}
					c.classes[key] = cl
				}
				m = classMember{id: j.ID, submit: j.SubmitTime.UnixNano(), code: c.intern(j.Reason.Code), j: j}
			} else {
				loose = append(loose, j)
				// A job in its retry backoff is loose but may be of a
				// class: that class's tail would have to come after it
				// too, so while it waits its class gets none.
				if !j.EligibleAt.IsZero() {
					if key, ok := sched.ClassKey(j); ok {
						c.retryKey[j.ID] = key
						c.retrying[key]++
					}
				}
			}
		}
		old := c.classOf[id]
		if old != nil && old == cl {
			ch := touch(cl)
			ch.updated = append(ch.updated, m)
			return
		}
		if old != nil {
			ch := touch(old)
			ch.gone = append(ch.gone, id)
			delete(c.classOf, id)
		}
		if cl != nil {
			ch := touch(cl)
			ch.added = append(ch.added, m)
			c.classOf[id] = cl
		}
	}
	ai := 0
	for _, id := range changed {
		if key, ok := c.retryKey[id]; ok {
			if c.retrying[key]--; c.retrying[key] == 0 {
				delete(c.retrying, key)
			}
			delete(c.retryKey, id)
		}
		var j *model.Job
		if ai < len(added) && added[ai].ID == id {
			j = added[ai]
			ai++
		}
		file(id, j)
	}
	for _, j := range added[ai:] { // a reload: nothing was changed
		file(j.ID, j)
	}
	c.looseSpare, c.loose = c.loose, mergeByID(c.loose, c.looseSpare[:0], changed, loose,
		func(j *model.Job) model.JobID { return j.ID })
	for cl, ch := range touched {
		cl.apply(ch)
		if len(cl.members) == 0 {
			delete(c.classes, cl.key)
		}
	}
}

// mergeByID returns, in into, old (ascending ID) less the IDs in gone
// (ascending) and merged with added (ascending ID).
func mergeByID[T any](old, into []T, gone []model.JobID, added []T, id func(T) model.JobID) []T {
	gi, ai := 0, 0
	for _, x := range old {
		xid := id(x)
		for ai < len(added) && id(added[ai]) < xid {
			into = append(into, added[ai])
			ai++
		}
		for gi < len(gone) && gone[gi] < xid {
			gi++
		}
		if gi < len(gone) && gone[gi] == xid {
			continue
		}
		into = append(into, x)
	}
	return append(into, added[ai:]...)
}

// tailReasonChanges adds to changes the jobs of the plan's tails whose
// logged reason code differs from their tail's. It reads the codes the
// cache keeps with the class members, not the jobs: a backlog's tail is
// most of the pending jobs, and reading each job each pass cost more than
// the rest of the pass.
func (c *schedCache) tailReasonChanges(tails []sched.TailReason, changes map[model.JobID]model.Reason) {
	for _, tr := range tails {
		t := c.tailed[tr.After]
		t.cl.tailReasonChanges(t.heads, c.intern(tr.Reason.Code), tr.Reason, changes)
	}
}

// liveTails is what LiveReason needs of the plan's tails: by class key, the
// tail's first and last job ID and its reason.
func (c *schedCache) liveTails(tails []sched.TailReason) map[string]liveTail {
	var out map[string]liveTail
	for _, tr := range tails {
		t := c.tailed[tr.After]
		m := t.cl.members
		if len(m) <= t.heads {
			continue
		}
		if out == nil {
			out = map[string]liveTail{}
		}
		out[t.cl.key] = liveTail{first: m[t.heads].id, last: m[len(m)-1].id, reason: tr.Reason}
	}
	return out
}
