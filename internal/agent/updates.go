package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/durehq/dure/internal/api"
)

// maxBatch caps the updates in one request so a backlog after an outage does
// not make one huge body.
const maxBatch = 1000

// sendSpacing is the least time from one update request to the next while
// a busy node's updates keep coming (see sender.run). It is also time a
// finished task's resources stay held on the servers: with short tasks a
// node's slots turn over no faster than its reports. 5 ms instead of 10
// raised the rate dure dev keeps up with from 875 to 870-998 jobs/s (100m
// tasks, 20 at once on 2 cores) at no measurable CPU per job at 500 jobs/s.
const sendSpacing = 5 * time.Millisecond

// busyTasks is how many live tasks make a node busy enough for its updates
// to wait up to sendSpacing for company.
const busyTasks = 4

// updateQueue holds task state changes waiting to be sent, oldest first.
type updateQueue struct {
	mu      sync.Mutex
	pending []api.AllocUpdate
	wake    chan struct{} // capacity 1: "there may be something to send"
}

func newUpdateQueue() *updateQueue { return &updateQueue{wake: make(chan struct{}, 1)} }

// push appends updates, in order, and wakes the sender.
func (q *updateQueue) push(u ...api.AllocUpdate) {
	q.mu.Lock()
	q.pending = append(q.pending, u...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// len is how many updates wait.
func (q *updateQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// take removes and returns up to n of the oldest pending updates.
func (q *updateQueue) take(n int) []api.AllocUpdate {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n > len(q.pending) {
		n = len(q.pending)
	}
	out := make([]api.AllocUpdate, n)
	copy(out, q.pending)
	q.pending = q.pending[n:]
	if len(q.pending) == 0 {
		q.pending = nil // let the backing array go
	}
	return out
}

// sender is the single goroutine that ships updates. Whatever is pending when
// it wakes goes in one request, so an idle agent sends an update at once and
// a busy one sends many per request. A failed batch is retried (the servers
// pool fails over) before anything newer, so updates are never lost or
// reordered while the agent runs.
type sender struct {
	q    *updateQueue
	send func(context.Context, []api.AllocUpdate) error
	// ready, if set, holds sending back until it is closed (the node is
	// registered: servers may refuse updates from nodes they do not know).
	ready <-chan struct{}
	// busy, if set, says whether updates may wait for others: then a
	// request follows the previous one no sooner than spacing after it.
	busy    func() bool
	spacing time.Duration
	log     *slog.Logger
	bo      *backoff
	// flushTimeout is how long sending goes on after ctx is done.
	flushTimeout time.Duration
}

func (s *sender) run(ctx context.Context) {
	// Sends are not cut off when ctx ends: a request in flight finishes (a
	// cancelled one may have been applied, and resending it would report
	// twice), and whatever is queued then gets flushTimeout to go out.
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(s.flushTimeout, cancel) })
	defer stopAfter()

	if s.ready != nil {
		select {
		case <-s.ready:
		case <-ctx.Done():
			if len(s.q.take(1<<30)) > 0 {
				s.log.Warn("agent stopped before it registered; task updates unsent")
			}
			return
		}
	}
	var batch []api.AllocUpdate // taken but not yet accepted by a server
	limit := maxBatch
	var lastSend time.Time
	for {
		if len(batch) == 0 && s.busy != nil && s.busy() && s.q.len() > 0 {
			// A busy node (many tasks at once): gather what else comes
			// until spacing after the last request began, so that each
			// request (an HTTP round trip, a log entry and a state write)
			// carries many tasks' updates. A node running a task or two
			// (someone may be waiting on each) sends at once.
			if wait := s.spacing - time.Since(lastSend); wait > 0 {
				sleep(ctx, wait)
			}
		}
		if len(batch) < limit {
			batch = dropSuperseded(append(batch, s.q.take(limit-len(batch))...))
		}
		if len(batch) == 0 {
			if ctx.Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-s.q.wake:
			}
			continue
		}
		lastSend = time.Now()
		err := s.send(sendCtx, batch)
		if err == nil {
			batch, limit = nil, maxBatch
			s.bo.reset()
			continue
		}
		var ae *api.Error
		switch {
		case sendCtx.Err() != nil:
			s.giveUp(batch, err)
			return
		case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && len(batch) > 1:
			// The batch is too large, or some update in it is refused:
			// send the front half first (the rest follows in order), and so
			// on until a refused update is alone.
			limit = max(len(batch)/2, 1)
			s.q.requeueFront(batch[limit:])
			batch = batch[:limit]
			continue
		case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500:
			// Every server would refuse it again; retrying forever would
			// block every later update from this node.
			s.log.Error("server refused a task update; dropping it", "alloc", batch[0].AllocID, "status", batch[0].Status, "err", err)
			batch = nil
			continue
		}
		d := s.bo.next()
		s.log.Warn("sending task updates failed; will retry", "updates", len(batch), "retry_in", d, "err", err)
		if !sleep(sendCtx, d) {
			s.giveUp(batch, err)
			return
		}
	}
}

// dropSuperseded removes from a batch each "running" update that a later
// update of the same allocation in the batch supersedes: a task that
// started and ended between two requests (a short task on a busy node) is
// reported once, by its end, which carries its start time too. That spares
// the servers a log entry's worth of decoding and a write of the
// allocation and of its job per such task. The rest keep their order.
func dropSuperseded(batch []api.AllocUpdate) []api.AllocUpdate {
	if len(batch) < 2 {
		return batch
	}
	var last map[string]int // allocation → index of its last update
	for i := range batch {
		if batch[i].Status != statusRunning {
			if last == nil {
				last = make(map[string]int)
			}
			last[batch[i].AllocID] = i
		}
	}
	if last == nil {
		return batch
	}
	kept := batch[:0]
	for i, u := range batch {
		if j, ok := last[u.AllocID]; ok && u.Status == statusRunning && j > i {
			continue
		}
		kept = append(kept, u)
	}
	return kept
}

// giveUp logs what could not be sent before the agent stopped. Nothing is
// lost for good: the next agent process finds the ended tasks through exec
// and reports them again.
func (s *sender) giveUp(batch []api.AllocUpdate, err error) {
	n := len(batch) + len(s.q.take(1<<30))
	s.log.Warn("agent stopping with task updates unsent; the next agent process reports them", "updates", n, "err", err)
}

// requeueFront puts updates back in front of the queue (they are older than
// anything pushed since they were taken).
func (q *updateQueue) requeueFront(u []api.AllocUpdate) {
	if len(u) == 0 {
		return
	}
	q.mu.Lock()
	q.pending = append(append([]api.AllocUpdate(nil), u...), q.pending...)
	q.mu.Unlock()
}
