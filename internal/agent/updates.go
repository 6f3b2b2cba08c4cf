package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/durehq/dure/internal/api"
)

// maxBatch caps the updates in one request so a backlog after an outage does
// not make one huge body.
const maxBatch = 1000

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
	log  *slog.Logger
	bo   *backoff
	// flushTimeout bounds the last attempt to send what is pending once ctx is done.
	flushTimeout time.Duration
}

func (s *sender) run(ctx context.Context) {
	var batch []api.AllocUpdate // taken but not yet accepted by a server
	limit := maxBatch
	for {
		if len(batch) < limit {
			batch = append(batch, s.q.take(limit-len(batch))...)
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.q.wake:
				continue
			}
		}
		if ctx.Err() != nil {
			s.flush(batch)
			return
		}
		err := s.send(ctx, batch)
		if err == nil {
			batch, limit = nil, maxBatch
			s.bo.reset()
			continue
		}
		var ae *api.Error
		switch {
		case ctx.Err() != nil:
			s.flush(batch)
			return
		case errors.As(err, &ae) && ae.Status == http.StatusRequestEntityTooLarge && len(batch) > 1:
			// Send the front half first; the rest follows in order.
			limit = max(len(batch)/2, 1)
			s.q.requeueFront(batch[limit:])
			batch = batch[:limit]
			continue
		case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500:
			// Every server would refuse it again; retrying forever would
			// block every later update from this node.
			s.log.Error("server rejected task updates; dropping them", "updates", len(batch), "first", batch[0].AllocID, "err", err)
			batch = nil
			continue
		}
		d := s.bo.next()
		s.log.Warn("sending task updates failed; will retry", "updates", len(batch), "retry_in", d, "err", err)
		if !sleep(ctx, d) {
			s.flush(batch)
			return
		}
	}
}

// flush makes one bounded attempt to send batch and everything still queued
// when the agent stops; what it cannot send is reported again by the next
// agent process (it finds the ended tasks in exec and reports them).
func (s *sender) flush(batch []api.AllocUpdate) {
	batch = append(batch, s.q.take(1<<30)...)
	if len(batch) == 0 || s.flushTimeout <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.flushTimeout)
	defer cancel()
	for len(batch) > 0 {
		n := min(len(batch), maxBatch)
		if err := s.send(ctx, batch[:n]); err != nil {
			s.log.Warn("could not send task updates before stopping", "updates", len(batch), "err", err)
			return
		}
		batch = batch[n:]
	}
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
