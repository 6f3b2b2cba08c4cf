package state

import (
	"cmp"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"

	"github.com/durehq/dure/internal/model"
)

// tables is one version of the whole state: every table and index is a
// copy-on-write B-tree. A published version is never changed again; a
// write clones it (O(1) per tree) and the clone copies only the tree nodes
// the write touches, so readers holding the old version keep it intact.
//
// Most indexes hold the stored objects themselves, ordered by a key made
// of their fields; two hold only keys (idem, ended), because they are
// written far less often than the jobs they point to change. Stored
// objects are never mutated (writers store fresh copies), so an object's
// key is fixed while it is in a tree.
type tables struct {
	jobs     *btree.BTreeG[*model.Job] // by ID
	jobState *btree.BTreeG[*model.Job] // by State, then ID
	finished *btree.BTreeG[*model.Job] // jobs in a terminal state, by ID
	// The same jobs by end time, then ID (keys only): which to prune first.
	ended *btree.BTreeG[endEntry]
	// Jobs with an owner and an idempotency key, by both, then ID. It
	// holds keys, not jobs: a job's key never changes, so the index is
	// written when a job is stored first and when it is deleted, not on
	// every update (idempotency keys are random: every write of the index
	// is a walk down a different path).
	idem *btree.BTreeG[idemEntry]

	allocs   *btree.BTreeG[*model.Allocation] // by ID
	allocJob *btree.BTreeG[*model.Allocation] // by JobID, then ID
	live     *btree.BTreeG[*model.Allocation] // allocations holding resources, by ID
	liveNode *btree.BTreeG[*model.Allocation] // the same, by Node, then ID
	// Every allocation by Node, then AgentIndex, then ID: an agent's watch
	// reads the newest changes on its node without walking everything the
	// node ever ran (kept for days).
	nodeAgent *btree.BTreeG[*model.Allocation]

	nodes  *btree.BTreeG[*model.Node]  // by Name
	queues *btree.BTreeG[*model.Queue] // by Name

	lastJobID model.JobID // the highest job ID ever stored (pruned jobs included)
}

// treeDegree is the B-trees' minimum degree: nodes hold 15 to 31 items. A
// write copies the nodes on its path once per transaction, so smaller nodes
// copy less; BenchmarkJobLifecycle was fastest at 16 (of 8, 16 and 32).
const treeDegree = 16

func newTables() *tables {
	return &tables{
		jobs:      btree.NewG(treeDegree, jobByID),
		jobState:  btree.NewG(treeDegree, jobByState),
		finished:  btree.NewG(treeDegree, jobByID),
		ended:     btree.NewG(treeDegree, endLess),
		idem:      btree.NewG(treeDegree, idemLess),
		allocs:    btree.NewG(treeDegree, allocByID),
		allocJob:  btree.NewG(treeDegree, allocByJob),
		live:      btree.NewG(treeDegree, allocByID),
		liveNode:  btree.NewG(treeDegree, allocByNode),
		nodeAgent: btree.NewG(treeDegree, allocByNodeAgent),
		nodes:     btree.NewG(treeDegree, func(a, b *model.Node) bool { return a.Name < b.Name }),
		queues:    btree.NewG(treeDegree, func(a, b *model.Queue) bool { return a.Name < b.Name }),
	}
}

// clone returns a version a write may change; t stays as it is. Only the
// single writer calls it (btree's Clone must not run concurrently with
// itself), and readers of t are unaffected.
func (t *tables) clone() *tables {
	return &tables{
		jobs:      t.jobs.Clone(),
		jobState:  t.jobState.Clone(),
		finished:  t.finished.Clone(),
		ended:     t.ended.Clone(),
		idem:      t.idem.Clone(),
		allocs:    t.allocs.Clone(),
		allocJob:  t.allocJob.Clone(),
		live:      t.live.Clone(),
		liveNode:  t.liveNode.Clone(),
		nodeAgent: t.nodeAgent.Clone(),
		nodes:     t.nodes.Clone(),
		queues:    t.queues.Clone(),
		lastJobID: t.lastJobID,
	}
}

func jobByID(a, b *model.Job) bool { return a.ID < b.ID }

func jobByState(a, b *model.Job) bool {
	if a.State != b.State {
		return a.State < b.State
	}
	return a.ID < b.ID
}

// endEntry is a finished job's entry in the end-time index: its end time
// in seconds and nanoseconds (any time.Time fits; Unix nanoseconds would
// not before 1678).
type endEntry struct {
	sec  int64
	nsec int32
	id   model.JobID
}

func endOf(j *model.Job) endEntry {
	return endEntry{j.EndTime.Unix(), int32(j.EndTime.Nanosecond()), j.ID}
}

// endTime is the end time an entry was made from (in UTC).
func (e endEntry) endTime() time.Time { return time.Unix(e.sec, int64(e.nsec)).UTC() }

func endLess(a, b endEntry) bool {
	switch {
	case a.sec != b.sec:
		return a.sec < b.sec
	case a.nsec != b.nsec:
		return a.nsec < b.nsec
	}
	return a.id < b.id
}

// idemEntry is a job's entry in the idempotency index.
type idemEntry struct {
	owner, key string
	id         model.JobID
}

func idemOf(j *model.Job) idemEntry { return idemEntry{j.Owner, j.IdempotencyKey, j.ID} }

func idemLess(a, b idemEntry) bool {
	if c := cmp.Or(strings.Compare(a.owner, b.owner), strings.Compare(a.key, b.key)); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

func allocByID(a, b *model.Allocation) bool { return a.ID < b.ID }

func allocByJob(a, b *model.Allocation) bool {
	if a.JobID != b.JobID {
		return a.JobID < b.JobID
	}
	return a.ID < b.ID
}

func allocByNode(a, b *model.Allocation) bool {
	if a.Node != b.Node {
		return a.Node < b.Node
	}
	return a.ID < b.ID
}

func allocByNodeAgent(a, b *model.Allocation) bool {
	if a.Node != b.Node {
		return a.Node < b.Node
	}
	if x, y := agentIndex(a), agentIndex(b); x != y {
		return x < y
	}
	return a.ID < b.ID
}

// agentIndex is an allocation's AgentIndex; one restored from a snapshot
// written before the field existed has its ModifyIndex instead, which is
// never lower (every change, the agent's included, counts there).
func agentIndex(a *model.Allocation) uint64 {
	if a.AgentIndex == 0 {
		return a.ModifyIndex
	}
	return a.AgentIndex
}

// Lookups need a pivot of a tree's item type. A Job and an Allocation are
// large, and a fresh one per lookup (they escape into the trees' compare
// functions) was a twentieth of the bytes a busy server allocated; the
// trees never keep a pivot, so pivots are pooled.
var (
	jobPivots   = sync.Pool{New: func() any { return new(model.Job) }}
	allocPivots = sync.Pool{New: func() any { return new(model.Allocation) }}
)

func jobPivot() *model.Job { return jobPivots.Get().(*model.Job) }

func releaseJobPivot(p *model.Job) {
	*p = model.Job{}
	jobPivots.Put(p)
}

func allocPivot() *model.Allocation { return allocPivots.Get().(*model.Allocation) }

func releaseAllocPivot(p *model.Allocation) {
	*p = model.Allocation{}
	allocPivots.Put(p)
}

// job returns the job with an ID, or nil.
func (t *tables) job(id model.JobID) *model.Job {
	p := jobPivot()
	p.ID = id
	j, _ := t.jobs.Get(p)
	releaseJobPivot(p)
	return j
}

// hasIdem says whether a job is in the idempotency index.
func hasIdem(j *model.Job) bool { return j.Owner != "" && j.IdempotencyKey != "" }

// sameIdem says whether two versions of a job have the same idempotency
// index entry.
func sameIdem(a, b *model.Job) bool {
	return a.Owner == b.Owner && a.IdempotencyKey == b.IdempotencyKey
}

// sameEnded says whether two versions of a job have the same end-time
// index entry: both finished, at the same time.
func sameEnded(a, b *model.Job) bool {
	return a.State.Terminal() && b.State.Terminal() && a.EndTime.Equal(b.EndTime)
}

// isLive says whether an allocation still holds resources.
func isLive(a *model.Allocation) bool { return !a.Status.Terminal() }

// checkJob and the other checks name what a stored object lacks. The
// writers never store such an object (a bug if they did); a snapshot from
// outside may hold one, and Restore rejects it.
func checkJob(j *model.Job) error {
	if j.State == "" {
		return fmt.Errorf("job %d has no state", j.ID)
	}
	return nil
}

func checkAlloc(a *model.Allocation) error {
	switch {
	case a.ID == "":
		return fmt.Errorf("allocation of job %d has no id", a.JobID)
	case a.Node == "":
		return fmt.Errorf("allocation %s has no node", a.ID)
	}
	return nil
}

// putJob stores j in every job index, replacing the job with its ID.
func (t *tables) putJob(j *model.Job) {
	old, replaced := t.jobs.ReplaceOrInsert(j)
	if replaced {
		t.unindexJob(old, j)
	}
	t.jobState.ReplaceOrInsert(j)
	if j.State.Terminal() {
		t.finished.ReplaceOrInsert(j)
		if !replaced || !sameEnded(old, j) {
			t.ended.ReplaceOrInsert(endOf(j))
		}
	}
	if hasIdem(j) && (!replaced || !sameIdem(old, j)) {
		t.idem.ReplaceOrInsert(idemOf(j))
	}
	if j.ID > t.lastJobID {
		t.lastJobID = j.ID
	}
}

// unindexJob removes old from the secondary indexes where next (the job
// replacing it, or nil) will not take its place under the same key.
func (t *tables) unindexJob(old, next *model.Job) {
	if next == nil || old.State != next.State {
		t.jobState.Delete(old)
	}
	if old.State.Terminal() && (next == nil || !next.State.Terminal()) {
		t.finished.Delete(old)
	}
	if old.State.Terminal() && (next == nil || !sameEnded(old, next)) {
		t.ended.Delete(endOf(old))
	}
	if hasIdem(old) && (next == nil || !sameIdem(old, next)) {
		t.idem.Delete(idemOf(old))
	}
}

// deleteJob removes a job, reporting whether there was one.
func (t *tables) deleteJob(id model.JobID) bool {
	p := jobPivot()
	p.ID = id
	old, ok := t.jobs.Delete(p)
	releaseJobPivot(p)
	if ok {
		t.unindexJob(old, nil)
	}
	return ok
}

// putAlloc stores a in every allocation index and returns the allocation
// it replaced, if any.
func (t *tables) putAlloc(a *model.Allocation) *model.Allocation {
	old, replaced := t.allocs.ReplaceOrInsert(a)
	if replaced {
		t.unindexAlloc(old, a)
	}
	t.allocJob.ReplaceOrInsert(a)
	t.nodeAgent.ReplaceOrInsert(a)
	if isLive(a) {
		t.live.ReplaceOrInsert(a)
		t.liveNode.ReplaceOrInsert(a)
	}
	return old
}

// unindexAlloc removes old from the secondary indexes where next (or nil)
// will not take its place under the same key.
func (t *tables) unindexAlloc(old, next *model.Allocation) {
	if next == nil || old.JobID != next.JobID {
		t.allocJob.Delete(old)
	}
	if next == nil || old.Node != next.Node || agentIndex(old) != agentIndex(next) {
		t.nodeAgent.Delete(old)
	}
	if isLive(old) && (next == nil || !isLive(next)) {
		t.live.Delete(old)
	}
	if isLive(old) && (next == nil || !isLive(next) || old.Node != next.Node) {
		t.liveNode.Delete(old)
	}
}

// jobAllocs returns a job's allocations in ID order.
func (t *tables) jobAllocs(id model.JobID) []*model.Allocation {
	p := allocPivot()
	p.JobID = id
	out := ascendWhile(t.allocJob, p, func(a *model.Allocation) bool { return a.JobID == id })
	releaseAllocPivot(p)
	return out
}

// ascendWhile returns tree's items from the first at or after from, in
// order, for as long as in holds: one run of an index's keys (a job's
// allocations, a node's, the jobs in a state).
func ascendWhile[T any](tree *btree.BTreeG[T], from T, in func(T) bool) []T {
	var out []T
	tree.AscendGreaterOrEqual(from, func(x T) bool {
		if !in(x) {
			return false
		}
		out = append(out, x)
		return true
	})
	return out
}

// metaEntry is a named counter in a snapshot: the only one is the highest
// job ID ever stored.
type metaEntry struct {
	Key   string
	Value uint64
}

const metaLastJobID = "last_job_id"
