package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/durehq/dure/internal/api"
)

// servers is the agent's view of the control plane: one client per server
// and which one is current. Every call goes to the current server; on a
// failure that another server might not have (transport error, timeout, 5xx)
// the next server is tried, round-robin, each at most once per call.
type servers struct {
	clients []*api.Client
	log     *slog.Logger

	mu    sync.Mutex
	cur   int
	moved chan struct{} // closed and replaced whenever cur changes
}

func newServers(addrs []string, log *slog.Logger) *servers {
	s := &servers{log: log, moved: make(chan struct{})}
	for _, a := range addrs {
		c := api.NewClient(a)
		c.NoLeaderRetry = 0 // the agent rotates between servers itself
		s.clients = append(s.clients, c)
	}
	return s
}

// do runs fn against the current server, failing over as described above.
// timeout bounds each attempt (0: only ctx bounds it).
func (s *servers) do(ctx context.Context, what string, timeout time.Duration, fn func(context.Context, *api.Client) error) error {
	return s.call(ctx, what, timeout, false, fn)
}

// follow is do for long calls (the allocation watch): an attempt is also
// abandoned as soon as another call moves the current server away from the
// one it uses. A server cut off by a partition never answers, not even with
// an error, so the watch must not wait for it once heartbeats moved on.
func (s *servers) follow(ctx context.Context, what string, timeout time.Duration, fn func(context.Context, *api.Client) error) error {
	return s.call(ctx, what, timeout, true, fn)
}

func (s *servers) call(ctx context.Context, what string, timeout time.Duration, follow bool, fn func(context.Context, *api.Client) error) error {
	s.mu.Lock()
	start := s.cur
	s.mu.Unlock()
	var err error
	for i := range s.clients {
		n := (start + i) % len(s.clients)
		c := s.clients[n]
		actx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, timeout)
		}
		if follow {
			actx, cancel = s.cancelOnMove(actx, cancel, n)
		}
		err = fn(actx, c)
		cancel()
		if err == nil || !failover(err) || ctx.Err() != nil {
			if err == nil && i > 0 {
				s.log.Info("switched server", "server", c.Addr(), "call", what)
			}
			s.setCurrent(start, n)
			return err
		}
		s.log.Debug("server call failed; trying the next server", "server", c.Addr(), "call", what, "err", err)
	}
	// All failed: start the next call at the server after the one we began with.
	s.setCurrent(start, (start+1)%len(s.clients))
	return err
}

// setCurrent moves the current server from `from` to `to` unless another
// caller already moved it.
func (s *servers) setCurrent(from, to int) {
	s.mu.Lock()
	if s.cur == from && from != to {
		s.cur = to
		close(s.moved)
		s.moved = make(chan struct{})
	}
	s.mu.Unlock()
}

// cancelOnMove returns a context cancelled when, after this call, another
// call moves the current server to one other than n (or when ctx ends). The
// attempt's own call may be failing over to n before it moved cur there, so
// only later moves count. The returned cancel also runs the old one.
func (s *servers) cancelOnMove(ctx context.Context, cancel context.CancelFunc, n int) (context.Context, context.CancelFunc) {
	mctx, mcancel := context.WithCancel(ctx)
	s.mu.Lock()
	moved := s.moved
	s.mu.Unlock()
	go func() {
		for {
			select {
			case <-moved:
			case <-mctx.Done():
				return
			}
			s.mu.Lock()
			cur := s.cur
			moved = s.moved
			s.mu.Unlock()
			if cur != n {
				mcancel()
				return
			}
		}
	}()
	return mctx, func() { mcancel(); cancel() }
}

// failover reports whether another server might answer where this one failed.
// 4xx answers are the request's fault and would fail everywhere.
func failover(err error) bool {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status >= 500 || ae.Status == 0
	}
	return true
}

// backoff produces capped, jittered exponential delays.
type backoff struct {
	base, cap time.Duration
	rnd       *rand.Rand
	n         int
}

func newBackoff(base, cap time.Duration, seed uint64) *backoff {
	return &backoff{base: base, cap: cap, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// next returns the next delay: base·2ⁿ capped at cap, then a random point in
// its upper half so that many agents restarting together spread out.
func (b *backoff) next() time.Duration {
	d := b.base << min(b.n, 30)
	if d > b.cap || d <= 0 {
		d = b.cap
	}
	b.n++
	half := d / 2
	return half + time.Duration(b.rnd.Int64N(int64(half)+1))
}

func (b *backoff) reset() { b.n = 0 }

// sleep waits d or until ctx is done; false means ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
