package state

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durehq/dure/internal/model"
)

// Store is the in-memory cluster state. It is safe for concurrent use: one
// writer at a time (the FSM), any number of snapshot readers.
type Store struct {
	cur   atomic.Pointer[version] // the last committed version
	index atomic.Uint64           // last applied log index

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced after every write
	restored chan struct{} // closed and replaced after every Restore
	watches  watches       // guarded by mu
	// The jobs each recent write changed, for readers that keep a view
	// of the jobs up to date instead of reading them all again (the
	// scheduler's pending list and history window). Guarded by mu.
	jobWrites  []jobWrite
	writeSeq   uint64 // sequence number of the last write
	feedFloor  uint64 // jobWrites covers the writes after this one
	feedMaxLen int
}

// version is a committed state and the number of the write that made it.
type version struct {
	t   *tables
	seq uint64
}

// jobWrite is one write's changed jobs.
type jobWrite struct {
	seq  uint64
	jobs []model.JobID
}

// defaultFeedLen is how many writes the job change feed keeps: a reader
// that falls further behind reads everything again.
const defaultFeedLen = 4096

// New returns an empty store.
func New() *Store {
	s := &Store{changed: make(chan struct{}), restored: make(chan struct{}), feedMaxLen: defaultFeedLen, writeSeq: 1, feedFloor: 1} // 0 is "never read"
	s.watches.init()
	s.cur.Store(&version{t: newTables(), seq: s.writeSeq})
	return s
}

// Index is the log index of the last applied write.
func (s *Store) Index() uint64 { return s.index.Load() }

// Changed returns a channel closed at the next write. Loops that react to any
// change (the scheduler) select on it, then call Changed again.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Restored returns a channel closed at the next Restore. A blocking reader
// selects on this channel too, taken before its snapshot, and reads again
// when it closes.
func (s *Store) Restored() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restored
}

func (s *Store) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Snapshot returns a consistent read-only view. It never blocks writers and
// is never changed by them.
func (s *Store) Snapshot() *Snapshot {
	// Load the index before the version: a reader may then see data newer
	// than Index (harmless: blocking queries wake early) but never an Index
	// newer than its data (which would make a watch miss a change).
	idx := s.index.Load()
	return &Snapshot{v: s.cur.Load(), store: s, Index: idx}
}

// Write applies fn in one write transaction at log index idx. If fn returns an
// error nothing is changed. Only the FSM calls Write.
func (s *Store) Write(idx uint64, fn func(tx *WriteTxn) error) error {
	base := s.cur.Load()
	wt := &WriteTxn{Snapshot: Snapshot{v: &version{t: base.t.clone()}, store: s, Index: idx}}
	if err := fn(wt); err != nil {
		return err
	}
	// Publish, record the write's jobs and fire its watches under mu, so
	// that SnapshotWithJobChanges sees both or neither, and a watch taken
	// under mu is either fired here or registered against this version.
	s.mu.Lock()
	s.writeSeq++
	wt.v.seq = s.writeSeq
	s.cur.Store(wt.v)
	if len(wt.jobs) > 0 {
		if len(s.jobWrites) >= s.feedMaxLen {
			drop := len(s.jobWrites) / 2
			s.feedFloor = s.jobWrites[drop-1].seq
			s.jobWrites = append(s.jobWrites[:0], s.jobWrites[drop:]...)
		}
		s.jobWrites = append(s.jobWrites, jobWrite{seq: s.writeSeq, jobs: wt.jobs})
	}
	s.watches.fire(s.writeSeq, &wt.touched, wt.jobs)
	s.mu.Unlock()
	if idx > s.index.Load() {
		s.index.Store(idx)
	}
	s.notify()
	return nil
}

// SnapshotWithJobChanges returns a snapshot, the IDs of the jobs written
// after the write numbered after (possibly with repeats) and the number of
// the last write the snapshot holds, to pass as after next time. ok is
// false when the store no longer knows what changed since then (the reader
// fell behind the feed, or the state was restored): the reader must read
// all jobs again. after 0 always gives ok false.
func (s *Store) SnapshotWithJobChanges(after uint64) (snap *Snapshot, changed []model.JobID, through uint64, ok bool) {
	idx := s.index.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	snap = &Snapshot{v: s.cur.Load(), store: s, Index: idx}
	if after == 0 || after < s.feedFloor || after > s.writeSeq {
		return snap, nil, s.writeSeq, false
	}
	i, _ := slices.BinarySearchFunc(s.jobWrites, after+1, func(w jobWrite, seq uint64) int { return cmp.Compare(w.seq, seq) })
	for _, w := range s.jobWrites[i:] {
		changed = append(changed, w.jobs...)
	}
	return snap, changed, s.writeSeq, true
}

// Snapshot is a read-only view of the state at one moment.
type Snapshot struct {
	v     *version
	store *Store // for watches
	Index uint64
}

// Job returns a job or nil.
func (s *Snapshot) Job(id model.JobID) *model.Job {
	return s.v.t.job(id)
}

// JobWatch returns a job (or nil) and a channel closed when it changes (or
// is created, or deleted).
func (s *Snapshot) JobWatch(id model.JobID) (*model.Job, <-chan struct{}) {
	j := s.Job(id)
	return j, s.store.watchJob(s.v, id, j)
}

// Jobs calls fn for every job, newest (highest ID) first, until fn returns false.
// The returned channel is closed when any job changes.
func (s *Snapshot) Jobs(fn func(*model.Job) bool) <-chan struct{} {
	s.v.t.jobs.Descend(fn)
	return s.store.watchJobsTable(s.v)
}

// ArrayElements returns the elements of the array whose ID is parent, in
// ID order (which is index order), pruned ones left out. An array's
// elements hold consecutive IDs from parent on, so this reads only them.
func (s *Snapshot) ArrayElements(parent model.JobID) []*model.Job {
	return ascendWhile(s.v.t.jobs, &model.Job{ID: parent}, func(j *model.Job) bool { return j.ArrayParent == parent })
}

// FinishedJobs calls fn for every job in a terminal state, newest (highest
// ID) first, until fn returns false. Pending and running jobs cost nothing.
func (s *Snapshot) FinishedJobs(fn func(*model.Job) bool) {
	s.v.t.finished.Descend(fn)
}

// FinishedJobCount is how many jobs are in a terminal state.
func (s *Snapshot) FinishedJobCount() int { return s.v.t.finished.Len() }

// FinishedJobsByEnd calls fn with the ID and end time of every job in a
// terminal state, the first to end first (then by ID), until fn returns
// false: it reads only as far as it is called.
func (s *Snapshot) FinishedJobsByEnd(fn func(id model.JobID, end time.Time) bool) {
	s.v.t.ended.Ascend(func(e endEntry) bool { return fn(e.id, e.endTime()) })
}

// JobByIdempotencyKey returns the job an owner submitted with key, or nil.
func (s *Snapshot) JobByIdempotencyKey(owner, key string) *model.Job {
	if owner == "" || key == "" {
		return nil
	}
	var found *model.Job
	s.v.t.idem.AscendGreaterOrEqual(idemEntry{owner: owner, key: key}, func(e idemEntry) bool {
		if e.owner == owner && e.key == key {
			found = s.Job(e.id)
		}
		return false
	})
	return found
}

// JobsInStateNewest returns an iterator over the jobs in one state, newest
// (highest ID) first, that reads the index only as far as it is called: a
// list with a limit costs the limit, not the whole state.
func (s *Snapshot) JobsInStateNewest(st model.JobState) func() *model.Job {
	t := s.v.t.jobState
	from := model.JobID(math.MaxUint64) // the highest ID the next call may return
	done := false
	return func() *model.Job {
		if done {
			return nil
		}
		var next *model.Job
		t.DescendLessOrEqual(&model.Job{State: st, ID: from}, func(j *model.Job) bool {
			if j.State == st {
				next = j
			}
			return false
		})
		if next == nil || next.ID == 0 {
			done = true
		} else {
			from = next.ID - 1
		}
		return next
	}
}

// JobsInState returns jobs in one state, in ascending ID order.
func (s *Snapshot) JobsInState(st model.JobState) []*model.Job {
	return ascendWhile(s.v.t.jobState, &model.Job{State: st}, func(j *model.Job) bool { return j.State == st })
}

// Alloc returns an allocation or nil.
func (s *Snapshot) Alloc(id string) *model.Allocation {
	p := allocPivot()
	p.ID = id
	a, _ := s.v.t.allocs.Get(p)
	releaseAllocPivot(p)
	return a
}

// AllocsByJob returns every allocation of a job (all attempts), ordered by ID.
func (s *Snapshot) AllocsByJob(id model.JobID) []*model.Allocation {
	return s.v.t.jobAllocs(id)
}

// AllocsByJobWatch is AllocsByJob with the highest ModifyIndex among them
// and a channel closed when any allocation of the job changes or is added:
// a task's start or end changes its allocation, not its job.
func (s *Snapshot) AllocsByJobWatch(id model.JobID) (allocs []*model.Allocation, modified uint64, watch <-chan struct{}) {
	allocs = s.v.t.jobAllocs(id)
	for _, a := range allocs {
		modified = max(modified, a.ModifyIndex)
	}
	return allocs, modified, s.store.watchJobAllocs(s.v, id, allocs)
}

// AllocsByNode returns every allocation placed on a node, in ID order.
func (s *Snapshot) AllocsByNode(node string) []*model.Allocation {
	out := ascendWhile(s.v.t.nodeAgent, &model.Allocation{Node: node}, func(a *model.Allocation) bool { return a.Node == node })
	slices.SortFunc(out, func(a, b *model.Allocation) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// newestAgentIndexOn is the highest AgentIndex of any allocation on node,
// 0 if none.
func (t *tables) newestAgentIndexOn(node string) (modified uint64) {
	p := allocPivot()
	p.Node, p.AgentIndex, p.ID = node, math.MaxUint64, "\xff"
	t.nodeAgent.DescendLessOrEqual(p, func(a *model.Allocation) bool {
		if a.Node == node {
			modified = agentIndex(a)
		}
		return false
	})
	releaseAllocPivot(p)
	return modified
}

// LiveAllocsByNode returns the allocations on a node that still hold
// resources, the highest AgentIndex of any allocation on the node (live or
// ended; 0 if none), and a channel closed when that index may have moved:
// an allocation on the node was added, changed with something its agent
// must hear (PutAlloc, not PutAllocReport) or deleted. Its cost does not
// grow with the node's finished allocations.
func (s *Snapshot) LiveAllocsByNode(node string) (live []*model.Allocation, modified uint64, watch <-chan struct{}) {
	p := allocPivot()
	p.Node = node
	live = ascendWhile(s.v.t.liveNode, p, func(a *model.Allocation) bool { return a.Node == node })
	releaseAllocPivot(p)
	return live, s.v.t.newestAgentIndexOn(node), s.store.watchNode(s.v, node)
}

// AllocChangesOnNode returns the allocations on a node (live or ended)
// whose agent has something to hear about them after index after (their
// AgentIndex: new, asked to stop, or ended by the servers; not the agent's
// own reports), oldest change first, the highest AgentIndex on the node,
// and a channel as LiveAllocsByNode's. Its cost grows with the changes,
// not with the node's allocations.
func (s *Snapshot) AllocChangesOnNode(node string, after uint64) (changed []*model.Allocation, modified uint64, watch <-chan struct{}) {
	p := allocPivot()
	p.Node, p.AgentIndex = node, after+1
	s.v.t.nodeAgent.AscendGreaterOrEqual(p, func(a *model.Allocation) bool {
		if a.Node != node {
			return false
		}
		if agentIndex(a) > after {
			changed = append(changed, a)
		}
		return true
	})
	releaseAllocPivot(p)
	return changed, s.v.t.newestAgentIndexOn(node), s.store.watchNode(s.v, node)
}

// LiveAllocs returns every allocation that still holds resources, in ID order.
func (s *Snapshot) LiveAllocs() []*model.Allocation {
	out := make([]*model.Allocation, 0, s.v.t.live.Len())
	s.v.t.live.Ascend(func(a *model.Allocation) bool { out = append(out, a); return true })
	return out
}

// Node returns a node or nil.
func (s *Snapshot) Node(name string) *model.Node {
	n, _ := s.v.t.nodes.Get(&model.Node{Name: name})
	return n
}

// Nodes returns every node, ordered by name.
func (s *Snapshot) Nodes() []*model.Node {
	var out []*model.Node
	s.v.t.nodes.Ascend(func(n *model.Node) bool { out = append(out, n); return true })
	return out
}

// Queue returns a queue or nil.
func (s *Snapshot) Queue(name string) *model.Queue {
	q, _ := s.v.t.queues.Get(&model.Queue{Name: name})
	return q
}

// Queues returns every queue, ordered by name.
func (s *Snapshot) Queues() []*model.Queue {
	var out []*model.Queue
	s.v.t.queues.Ascend(func(q *model.Queue) bool { out = append(out, q); return true })
	return out
}

// LastJobID is the highest job ID ever submitted (pruned jobs included).
func (s *Snapshot) LastJobID() model.JobID { return s.v.t.lastJobID }

// WriteTxn is a write transaction; it reads its own writes.
type WriteTxn struct {
	Snapshot
	jobs    []model.JobID // written or deleted, for the change feed and job watches
	touched touched       // what the other watches follow
}

// PutJob inserts or replaces a job. The caller passes a fresh copy: stored
// objects are shared with readers and must never be mutated.
func (w *WriteTxn) PutJob(j *model.Job) {
	if err := checkJob(j); err != nil {
		panic("state: " + err.Error()) // a bug in the caller, as storing it would corrupt the indexes
	}
	j.ModifyIndex = w.Index
	w.v.t.putJob(j)
	w.jobs = append(w.jobs, j.ID)
}

// DeleteJob removes a job and all its allocations.
func (w *WriteTxn) DeleteJob(id model.JobID) {
	if w.v.t.deleteJob(id) {
		w.jobs = append(w.jobs, id)
	}
	for _, a := range w.v.t.jobAllocs(id) {
		w.v.t.allocs.Delete(a)
		w.v.t.unindexAlloc(a, nil)
		w.touched.alloc(a, true)
	}
}

// PutAlloc inserts or replaces an allocation (a fresh copy, see PutJob) with
// a change its node's agent must hear about (AgentIndex).
func (w *WriteTxn) PutAlloc(a *model.Allocation) {
	a.ModifyIndex = w.Index
	a.AgentIndex = w.Index
	w.putAlloc(a, true)
}

// PutAllocReport stores what the allocation's agent reported about it (a
// fresh copy of the stored one, see PutJob). Its AgentIndex stays: the
// agent knows what it said, and neither its watch nor its node's wakes.
func (w *WriteTxn) PutAllocReport(a *model.Allocation) {
	a.ModifyIndex = w.Index
	w.putAlloc(a, false)
}

func (w *WriteTxn) putAlloc(a *model.Allocation, forAgent bool) {
	if err := checkAlloc(a); err != nil {
		panic("state: " + err.Error()) // see PutJob
	}
	if old := w.v.t.putAlloc(a); old != nil && old.Node != a.Node {
		w.touched.alloc(old, true)
	}
	w.touched.alloc(a, forAgent)
}

// PutNode inserts or replaces a node (a fresh copy, see PutJob).
func (w *WriteTxn) PutNode(n *model.Node) {
	n.ModifyIndex = w.Index
	w.v.t.nodes.ReplaceOrInsert(n)
}

// PutQueue inserts or replaces a queue (a fresh copy, see PutJob).
func (w *WriteTxn) PutQueue(q *model.Queue) {
	q.ModifyIndex = w.Index
	w.v.t.queues.ReplaceOrInsert(q)
}
