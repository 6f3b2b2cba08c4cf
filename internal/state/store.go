package state

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"

	"github.com/durehq/dure/internal/model"
)

// Store is the in-memory cluster state. It is safe for concurrent use: one
// writer at a time (the FSM), any number of snapshot readers.
type Store struct {
	db    atomic.Pointer[memdb.MemDB] // replaced whole by Restore
	index atomic.Uint64               // last applied log index

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced after every write
	restored chan struct{} // closed and replaced after every Restore
	// The jobs each recent write changed, for readers that keep a view
	// of the jobs up to date instead of reading them all again (the
	// scheduler's pending list and history window). Guarded by mu.
	jobWrites  []jobWrite
	writeSeq   uint64 // sequence number of the last write
	feedFloor  uint64 // jobWrites covers the writes after this one
	feedMaxLen int
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
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(fmt.Sprintf("state schema is invalid: %v", err)) // a programming error, caught by every test
	}
	s := &Store{changed: make(chan struct{}), restored: make(chan struct{}), feedMaxLen: defaultFeedLen, writeSeq: 1, feedFloor: 1} // 0 is "never read"
	s.db.Store(db)
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

// Restored returns a channel closed at the next Restore. Restore swaps in a
// new database, so the watch channels of snapshots taken before it never
// fire: a blocking reader selects on this channel too, taken before its
// snapshot, and reads again when it closes.
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
	// Load the index before opening the transaction: a reader may then see
	// data newer than Index (harmless: blocking queries wake early) but never
	// an Index newer than its data (which would make a watch miss a change).
	idx := s.index.Load()
	return &Snapshot{txn: s.db.Load().Txn(false), Index: idx}
}

// Write applies fn in one write transaction at log index idx. If fn returns an
// error nothing is changed. Only the FSM calls Write.
func (s *Store) Write(idx uint64, fn func(tx *WriteTxn) error) error {
	txn := s.db.Load().Txn(true)
	wt := &WriteTxn{Snapshot: Snapshot{txn: txn, Index: idx}}
	if err := fn(wt); err != nil {
		txn.Abort()
		return err
	}
	// Commit and record the write's jobs under mu, so that
	// SnapshotWithJobChanges sees both or neither.
	s.mu.Lock()
	txn.Commit()
	s.writeSeq++
	if len(wt.jobs) > 0 {
		if len(s.jobWrites) >= s.feedMaxLen {
			drop := len(s.jobWrites) / 2
			s.feedFloor = s.jobWrites[drop-1].seq
			s.jobWrites = append(s.jobWrites[:0], s.jobWrites[drop:]...)
		}
		s.jobWrites = append(s.jobWrites, jobWrite{seq: s.writeSeq, jobs: wt.jobs})
	}
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
	snap = &Snapshot{txn: s.db.Load().Txn(false), Index: idx}
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
	txn   *memdb.Txn
	Index uint64
}

func must(err error) {
	if err != nil {
		// memdb only fails on schema misuse (unknown table or index): a bug.
		panic(fmt.Sprintf("state: %v", err))
	}
}

// Job returns a job or nil.
func (s *Snapshot) Job(id model.JobID) *model.Job {
	obj, err := s.txn.First(tableJobs, "id", id)
	must(err)
	if obj == nil {
		return nil
	}
	return obj.(*model.Job)
}

// JobWatch returns a job (or nil) and a channel closed when it changes.
func (s *Snapshot) JobWatch(id model.JobID) (*model.Job, <-chan struct{}) {
	ch, obj, err := s.txn.FirstWatch(tableJobs, "id", id)
	must(err)
	if obj == nil {
		return nil, ch
	}
	return obj.(*model.Job), ch
}

// Jobs calls fn for every job, newest (highest ID) first, until fn returns false.
// The returned channel is closed when the jobs table changes.
func (s *Snapshot) Jobs(fn func(*model.Job) bool) <-chan struct{} {
	it, err := s.txn.GetReverse(tableJobs, "id")
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if !fn(obj.(*model.Job)) {
			break
		}
	}
	return it.WatchCh()
}

// ArrayElements returns the elements of the array whose ID is parent, in
// ID order (which is index order), pruned ones left out. An array's
// elements hold consecutive IDs from parent on, so this reads only them.
func (s *Snapshot) ArrayElements(parent model.JobID) []*model.Job {
	it, err := s.txn.LowerBound(tableJobs, "id", parent)
	must(err)
	var out []*model.Job
	for obj := it.Next(); obj != nil; obj = it.Next() {
		j := obj.(*model.Job)
		if j.ArrayParent != parent {
			break
		}
		out = append(out, j)
	}
	return out
}

// FinishedJobs calls fn for every job in a terminal state, newest (highest
// ID) first, until fn returns false. Pending and running jobs cost nothing.
func (s *Snapshot) FinishedJobs(fn func(*model.Job) bool) {
	it, err := s.txn.GetReverse(tableJobs, "finished")
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if !fn(obj.(*model.Job)) {
			return
		}
	}
}

// JobByIdempotencyKey returns the job an owner submitted with key, or nil.
func (s *Snapshot) JobByIdempotencyKey(owner, key string) *model.Job {
	if key == "" {
		return nil
	}
	obj, err := s.txn.First(tableJobs, "idem", owner, key)
	must(err)
	if obj == nil {
		return nil
	}
	return obj.(*model.Job)
}

// JobsInStateNewest returns an iterator over the jobs in one state, newest
// (highest ID) first, that reads the index only as far as it is called: a
// list with a limit costs the limit, not the whole state.
func (s *Snapshot) JobsInStateNewest(st model.JobState) func() *model.Job {
	it, err := s.txn.GetReverse(tableJobs, "state", string(st))
	must(err)
	return func() *model.Job {
		obj := it.Next()
		if obj == nil {
			return nil
		}
		return obj.(*model.Job)
	}
}

// JobsInState returns jobs in one state, in ascending ID order.
func (s *Snapshot) JobsInState(st model.JobState) []*model.Job {
	it, err := s.txn.Get(tableJobs, "state", string(st))
	must(err)
	var out []*model.Job
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*model.Job))
	}
	return out
}

// Alloc returns an allocation or nil.
func (s *Snapshot) Alloc(id string) *model.Allocation {
	obj, err := s.txn.First(tableAllocs, "id", id)
	must(err)
	if obj == nil {
		return nil
	}
	return obj.(*model.Allocation)
}

// AllocsByJob returns every allocation of a job (all attempts), ordered by ID.
func (s *Snapshot) AllocsByJob(id model.JobID) []*model.Allocation {
	allocs, _, _ := s.AllocsByJobWatch(id)
	return allocs
}

// AllocsByJobWatch is AllocsByJob with the highest ModifyIndex among them
// and a channel closed when any allocation of the job changes or is added:
// a task's start or end changes its allocation, not its job.
func (s *Snapshot) AllocsByJobWatch(id model.JobID) (allocs []*model.Allocation, modified uint64, watch <-chan struct{}) {
	it, err := s.txn.Get(tableAllocs, "job", id)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		a := obj.(*model.Allocation)
		allocs = append(allocs, a)
		modified = max(modified, a.ModifyIndex)
	}
	return allocs, modified, it.WatchCh()
}

// AllocsByNode returns every allocation placed on a node, in ID order. It reads the node_agent index (node, then
// AgentIndex): an index on the node alone would cost every allocation
// write one more tree insert, for this rare read.
func (s *Snapshot) AllocsByNode(node string) []*model.Allocation {
	it, err := s.txn.Get(tableAllocs, "node_agent_prefix", node+"\x00") // see LiveAllocsByNode
	must(err)
	var out []*model.Allocation
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*model.Allocation))
	}
	slices.SortFunc(out, func(a, b *model.Allocation) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// LiveAllocsByNode returns the allocations on a node that still hold
// resources, the highest AgentIndex of any allocation on the node (live or
// ended; 0 if none), and a channel closed when any allocation on the node
// changes. Its cost does not grow with the node's finished allocations.
func (s *Snapshot) LiveAllocsByNode(node string) (live []*model.Allocation, modified uint64, watch <-chan struct{}) {
	it, err := s.txn.Get(tableAllocs, "live_node", node)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		live = append(live, obj.(*model.Allocation))
	}
	// The prefix of a compound index ends with its last argument as given:
	// the terminating NUL keeps node "n1" from matching "n10".
	last, err := s.txn.GetReverse(tableAllocs, "node_agent_prefix", node+"\x00")
	must(err)
	if obj := last.Next(); obj != nil {
		modified = agentIndex(obj.(*model.Allocation))
	}
	return live, modified, last.WatchCh()
}

// AllocChangesOnNode returns the allocations on a node (live or ended)
// whose agent has something to hear about them after index after (their
// AgentIndex: new, asked to stop, or ended by the servers; not the agent's
// own reports), oldest change first, the highest AgentIndex on the node,
// and a channel closed when any allocation there changes. Its cost grows
// with the changes, not with the node's allocations.
func (s *Snapshot) AllocChangesOnNode(node string, after uint64) (changed []*model.Allocation, modified uint64, watch <-chan struct{}) {
	it, err := s.txn.GetReverse(tableAllocs, "node_agent_prefix", node+"\x00") // see LiveAllocsByNode
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		a := obj.(*model.Allocation)
		if modified == 0 {
			modified = agentIndex(a)
		}
		if agentIndex(a) <= after {
			break
		}
		changed = append(changed, a)
	}
	slices.Reverse(changed)
	return changed, modified, it.WatchCh()
}

// LiveAllocs returns every allocation that still holds resources.
func (s *Snapshot) LiveAllocs() []*model.Allocation {
	it, err := s.txn.Get(tableAllocs, "live", true)
	must(err)
	var out []*model.Allocation
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*model.Allocation))
	}
	return out
}

// Node returns a node or nil.
func (s *Snapshot) Node(name string) *model.Node {
	obj, err := s.txn.First(tableNodes, "id", name)
	must(err)
	if obj == nil {
		return nil
	}
	return obj.(*model.Node)
}

// Nodes returns every node, ordered by name.
func (s *Snapshot) Nodes() []*model.Node {
	it, err := s.txn.Get(tableNodes, "id")
	must(err)
	var out []*model.Node
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*model.Node))
	}
	return out
}

// Queue returns a queue or nil.
func (s *Snapshot) Queue(name string) *model.Queue {
	obj, err := s.txn.First(tableQueues, "id", name)
	must(err)
	if obj == nil {
		return nil
	}
	return obj.(*model.Queue)
}

// Queues returns every queue, ordered by name.
func (s *Snapshot) Queues() []*model.Queue {
	it, err := s.txn.Get(tableQueues, "id")
	must(err)
	var out []*model.Queue
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*model.Queue))
	}
	return out
}

// LastJobID is the highest job ID ever submitted (pruned jobs included).
func (s *Snapshot) LastJobID() model.JobID {
	obj, err := s.txn.First(tableMeta, "id", metaLastJobID)
	must(err)
	if obj == nil {
		return 0
	}
	return model.JobID(obj.(*metaEntry).Value)
}

// WriteTxn is a write transaction; it reads its own writes.
type WriteTxn struct {
	Snapshot
	jobs []model.JobID // written or deleted, for the change feed
}

// PutJob inserts or replaces a job. The caller passes a fresh copy: stored
// objects are shared with readers and must never be mutated.
func (w *WriteTxn) PutJob(j *model.Job) {
	j.ModifyIndex = w.Index
	must(w.txn.Insert(tableJobs, j))
	w.jobs = append(w.jobs, j.ID)
	if uint64(j.ID) > uint64(w.LastJobID()) {
		must(w.txn.Insert(tableMeta, &metaEntry{Key: metaLastJobID, Value: uint64(j.ID)}))
	}
}

// DeleteJob removes a job and all its allocations.
func (w *WriteTxn) DeleteJob(id model.JobID) {
	if j := w.Job(id); j != nil {
		must(w.txn.Delete(tableJobs, j))
		w.jobs = append(w.jobs, id)
	}
	_, err := w.txn.DeleteAll(tableAllocs, "job", id)
	must(err)
}

// PutAlloc inserts or replaces an allocation (a fresh copy, see PutJob) with
// a change its node's agent must hear about (AgentIndex).
func (w *WriteTxn) PutAlloc(a *model.Allocation) {
	a.ModifyIndex = w.Index
	a.AgentIndex = w.Index
	must(w.txn.Insert(tableAllocs, a))
}

// PutAllocReport stores what the allocation's agent reported about it (a
// fresh copy of the stored one, see PutJob). Its AgentIndex stays: the
// agent knows what it said, and its watch does not echo it back.
func (w *WriteTxn) PutAllocReport(a *model.Allocation) {
	a.ModifyIndex = w.Index
	must(w.txn.Insert(tableAllocs, a))
}

// PutNode inserts or replaces a node (a fresh copy, see PutJob).
func (w *WriteTxn) PutNode(n *model.Node) {
	n.ModifyIndex = w.Index
	must(w.txn.Insert(tableNodes, n))
}

// PutQueue inserts or replaces a queue (a fresh copy, see PutJob).
func (w *WriteTxn) PutQueue(q *model.Queue) {
	q.ModifyIndex = w.Index
	must(w.txn.Insert(tableQueues, q))
}
