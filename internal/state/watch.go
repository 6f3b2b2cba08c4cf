package state

import "github.com/durehq/dure/internal/model"

// Watches: a reader that found nothing new asks for a channel that closes
// when what it read changes. A write fires the channels of what it touched
// while it publishes its version (both under Store.mu), and a watch is
// registered under the same lock after checking that what the reader saw
// is still current; if it is not, the reader gets a closed channel and
// reads again. So no change between a reader's snapshot and its watch is
// missed, and a channel exists only while someone waits on it.

// touched is what a write changed that the watches besides the jobs' own
// follow.
type touched struct {
	jobAllocs []model.JobID // jobs whose allocations changed
	nodes     []string      // nodes whose agents have something new to hear
}

func (t *touched) alloc(a *model.Allocation, forAgent bool) {
	t.jobAllocs = append(t.jobAllocs, a.JobID)
	if forAgent {
		t.nodes = append(t.nodes, a.Node)
	}
}

// watches is the Store's registry of waiting readers' channels.
type watches struct {
	closed    chan struct{} // closed once: for a reader whose read is already stale
	job       map[model.JobID]chan struct{}
	jobAllocs map[model.JobID]chan struct{}
	node      map[string]chan struct{}
	nodeSeq   map[string]uint64 // the last write that fired each node's watch
	jobsTable chan struct{}     // any job changes; nil until asked for
	jobsSeq   uint64            // the last write that changed a job
	floor     uint64            // the last Restore's write: every version before it is stale
}

func (w *watches) init() {
	if w.closed == nil {
		w.closed = make(chan struct{})
		close(w.closed)
	}
	w.job = map[model.JobID]chan struct{}{}
	w.jobAllocs = map[model.JobID]chan struct{}{}
	w.node = map[string]chan struct{}{}
	w.nodeSeq = map[string]uint64{}
}

// fire closes the channels of what the write numbered seq touched.
func (w *watches) fire(seq uint64, t *touched, jobs []model.JobID) {
	for _, id := range jobs {
		fireKey(w.job, id)
	}
	if len(jobs) > 0 {
		w.jobsSeq = seq
		if w.jobsTable != nil {
			close(w.jobsTable)
			w.jobsTable = nil
		}
	}
	for _, id := range t.jobAllocs {
		fireKey(w.jobAllocs, id)
	}
	for _, n := range t.nodes {
		w.nodeSeq[n] = seq
		fireKey(w.node, n)
	}
}

// fireAll closes every channel: a Restore replaced the whole state.
func (w *watches) fireAll(seq uint64) {
	for _, m := range []map[model.JobID]chan struct{}{w.job, w.jobAllocs} {
		for _, ch := range m {
			close(ch)
		}
	}
	for _, ch := range w.node {
		close(ch)
	}
	if w.jobsTable != nil {
		close(w.jobsTable)
		w.jobsTable = nil
	}
	w.init()
	w.floor, w.jobsSeq = seq, seq
}

func fireKey[K comparable](m map[K]chan struct{}, k K) {
	if ch, ok := m[k]; ok {
		close(ch)
		delete(m, k)
	}
}

func channelFor[K comparable](m map[K]chan struct{}, k K) chan struct{} {
	ch, ok := m[k]
	if !ok {
		ch = make(chan struct{})
		m[k] = ch
	}
	return ch
}

// watchJob returns a channel closed when job id changes after version v,
// in which the reader found it as seen (nil: absent).
func (s *Store) watchJob(v *version, id model.JobID, seen *model.Job) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.seq < s.watches.floor {
		return s.watches.closed
	}
	// Stored jobs are never changed in place: a different pointer is a
	// different job.
	if s.cur.Load().t.job(id) != seen {
		return s.watches.closed
	}
	return channelFor(s.watches.job, id)
}

// watchJobAllocs returns a channel closed when an allocation of job id is
// added, changed or deleted after version v, in which they were seen.
func (s *Store) watchJobAllocs(v *version, id model.JobID, seen []*model.Allocation) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.seq < s.watches.floor {
		return s.watches.closed
	}
	now := s.cur.Load().t.jobAllocs(id)
	if len(now) != len(seen) {
		return s.watches.closed
	}
	for i := range now {
		if now[i] != seen[i] {
			return s.watches.closed
		}
	}
	return channelFor(s.watches.jobAllocs, id)
}

// watchNode returns a channel closed when the agent of node has something
// new to hear after version v.
func (s *Store) watchNode(v *version, node string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.seq < s.watches.floor || s.watches.nodeSeq[node] > v.seq {
		return s.watches.closed
	}
	return channelFor(s.watches.node, node)
}

// watchJobsTable returns a channel closed when any job changes after
// version v.
func (s *Store) watchJobsTable(v *version) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.seq < s.watches.floor || s.watches.jobsSeq > v.seq {
		return s.watches.closed
	}
	if s.watches.jobsTable == nil {
		s.watches.jobsTable = make(chan struct{})
	}
	return s.watches.jobsTable
}
