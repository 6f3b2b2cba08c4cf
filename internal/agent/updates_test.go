package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

func upd(ids ...string) []api.AllocUpdate {
	out := make([]api.AllocUpdate, len(ids))
	for i, id := range ids {
		out[i] = api.AllocUpdate{AllocID: id, Status: "running"}
	}
	return out
}

func ids(u []api.AllocUpdate) []string {
	out := make([]string, len(u))
	for i := range u {
		out[i] = u[i].AllocID
	}
	return out
}

// recorder is the far end of a sender in these tests: it records every
// batch and answers with whatever answer returns for it.
type recorder struct {
	mu      sync.Mutex
	calls   [][]string // every attempt
	ok      [][]string // accepted batches
	answer  func(call int, batch []api.AllocUpdate) error
	changed chan struct{}
}

func newRecorder(answer func(int, []api.AllocUpdate) error) *recorder {
	return &recorder{answer: answer, changed: make(chan struct{}, 1000)}
}

func (r *recorder) send(ctx context.Context, b []api.AllocUpdate) error {
	r.mu.Lock()
	n := len(r.calls)
	r.calls = append(r.calls, ids(b))
	r.mu.Unlock()
	err := r.answer(n, b)
	if err == nil {
		r.mu.Lock()
		r.ok = append(r.ok, ids(b))
		r.mu.Unlock()
	}
	r.changed <- struct{}{}
	return err
}

// waitAccepted waits until n updates in total were accepted and returns the
// accepted batches.
func (r *recorder) waitAccepted(t *testing.T, n int) [][]string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		total := 0
		for _, b := range r.ok {
			total += len(b)
		}
		got := append([][]string(nil), r.ok...)
		r.mu.Unlock()
		if total >= n {
			return got
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("only %d of %d updates accepted; batches so far %v", total, n, got)
		}
	}
}

func startSender(t *testing.T, q *updateQueue, r *recorder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &sender{q: q, send: r.send, log: slog.New(slog.DiscardHandler), bo: newBackoff(time.Millisecond, 5*time.Millisecond, 1), flushTimeout: time.Second}
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func flatten(b [][]string) []string {
	var out []string
	for _, x := range b {
		out = append(out, x...)
	}
	return out
}

func TestSenderSendsAnIdleUpdateAtOnce(t *testing.T) {
	q := newUpdateQueue()
	r := newRecorder(func(int, []api.AllocUpdate) error { return nil })
	startSender(t, q, r)
	q.push(upd("1.0.0")...)
	got := r.waitAccepted(t, 1)
	if diff := cmp.Diff([][]string{{"1.0.0"}}, got); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

func TestSenderBatchesWhatPilesUpDuringASend(t *testing.T) {
	q := newUpdateQueue()
	release := make(chan struct{})
	inFirst := make(chan struct{})
	r := newRecorder(func(call int, _ []api.AllocUpdate) error {
		if call == 0 {
			close(inFirst)
			<-release
		}
		return nil
	})
	startSender(t, q, r)
	q.push(upd("a")...)
	<-inFirst
	var want []string
	for i := range 50 {
		id := fmt.Sprintf("b%d", i)
		want = append(want, id)
		q.push(upd(id)...)
	}
	close(release)
	got := r.waitAccepted(t, 51)
	if diff := cmp.Diff([][]string{{"a"}, want}, got); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

func TestSenderReportsATaskThatStartedAndEndedInOneBatchOnce(t *testing.T) {
	q := newUpdateQueue()
	release := make(chan struct{})
	inFirst := make(chan struct{})
	var mu sync.Mutex
	var second []api.AllocUpdate
	r := newRecorder(func(call int, b []api.AllocUpdate) error {
		switch call {
		case 0:
			close(inFirst)
			<-release
		case 1:
			mu.Lock()
			second = append([]api.AllocUpdate(nil), b...)
			mu.Unlock()
		}
		return nil
	})
	startSender(t, q, r)
	q.push(upd("a")...)
	<-inFirst
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	q.push(
		api.AllocUpdate{AllocID: "x", Status: statusRunning, StartedAt: started},
		api.AllocUpdate{AllocID: "y", Status: statusRunning, StartedAt: started},
		api.AllocUpdate{AllocID: "x", Status: statusExited, ExitCode: 3, StartedAt: started, FinishedAt: started.Add(time.Second)},
		api.AllocUpdate{AllocID: "z", Status: statusFailed, ExitCode: 127},
	)
	close(release)
	r.waitAccepted(t, 4)
	mu.Lock()
	defer mu.Unlock()
	// x's start is carried by its end; y still runs, so its start is sent.
	want := []api.AllocUpdate{
		{AllocID: "y", Status: statusRunning, StartedAt: started},
		{AllocID: "x", Status: statusExited, ExitCode: 3, StartedAt: started, FinishedAt: started.Add(time.Second)},
		{AllocID: "z", Status: statusFailed, ExitCode: 127},
	}
	if diff := cmp.Diff(want, second); diff != "" {
		t.Errorf("second batch (-want +got):\n%s", diff)
	}
}

func TestSenderOfABusyNodeGathersUpdatesBetweenRequests(t *testing.T) {
	q := newUpdateQueue()
	r := newRecorder(func(int, []api.AllocUpdate) error { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	s := &sender{q: q, send: r.send, log: slog.New(slog.DiscardHandler), bo: newBackoff(time.Millisecond, 5*time.Millisecond, 1),
		flushTimeout: time.Second, busy: func() bool { return true }, spacing: time.Second}
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	q.push(upd("a")...)
	r.waitAccepted(t, 1)
	// An idle node would send b at once and c and d after it; a busy one
	// holds b until a second after a's request, and sends all three.
	q.push(upd("b")...)
	time.Sleep(100 * time.Millisecond)
	q.push(upd("c", "d")...)
	got := r.waitAccepted(t, 4)
	if diff := cmp.Diff([][]string{{"a"}, {"b", "c", "d"}}, got); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

func TestSenderRetriesFailedBatchesInOrder(t *testing.T) {
	q := newUpdateQueue()
	var pushedMore sync.Once
	r := newRecorder(func(call int, _ []api.AllocUpdate) error {
		if call < 3 {
			// Newer updates arrive while the servers are unreachable.
			pushedMore.Do(func() { q.push(upd("2.0.0/exited", "3.0.0/running")...) })
			return errors.New("dial tcp 127.0.0.1:7070: connect: connection refused")
		}
		return nil
	})
	startSender(t, q, r)
	q.push(upd("1.0.0/running", "2.0.0/running")...)
	got := flatten(r.waitAccepted(t, 4))
	want := []string{"1.0.0/running", "2.0.0/running", "2.0.0/exited", "3.0.0/running"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("accepted updates (-want +got):\n%s", diff)
	}
}

func TestSenderDropsOnlyTheUpdateEveryServerRefuses(t *testing.T) {
	q := newUpdateQueue()
	release := make(chan struct{})
	inFirst := make(chan struct{})
	r := newRecorder(func(call int, b []api.AllocUpdate) error {
		if call == 0 {
			close(inFirst)
			<-release
		}
		for _, u := range b {
			if u.AllocID == "bad" {
				return &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: "updates: allocation bad is not on node n1"}
			}
		}
		return nil
	})
	startSender(t, q, r)
	q.push(upd("x")...)
	<-inFirst
	q.push(upd("a", "bad", "c", "d", "e")...)
	close(release)
	got := flatten(r.waitAccepted(t, 5))
	if diff := cmp.Diff([]string{"x", "a", "c", "d", "e"}, got); diff != "" {
		t.Errorf("accepted updates (-want +got):\n%s", diff)
	}
}

func TestSenderSplitsBatchesTheServerFindsTooLarge(t *testing.T) {
	q := newUpdateQueue()
	release := make(chan struct{})
	inFirst := make(chan struct{})
	r := newRecorder(func(call int, b []api.AllocUpdate) error {
		if call == 0 {
			close(inFirst)
			<-release
			return nil
		}
		if len(b) > 2 {
			return &api.Error{Status: http.StatusRequestEntityTooLarge, Code: api.CodeTooLarge, Message: "body over 1MiB"}
		}
		return nil
	})
	startSender(t, q, r)
	q.push(upd("0")...)
	<-inFirst
	q.push(upd("1", "2", "3", "4", "5")...)
	close(release)
	got := r.waitAccepted(t, 6)
	if diff := cmp.Diff([]string{"0", "1", "2", "3", "4", "5"}, flatten(got)); diff != "" {
		t.Errorf("accepted updates (-want +got):\n%s", diff)
	}
	for _, b := range got[1:] {
		if len(b) > 2 {
			t.Errorf("accepted batch %v has more than the 2 updates the server takes", b)
		}
	}
}

func TestSenderFlushesWhenStopped(t *testing.T) {
	q := newUpdateQueue()
	r := newRecorder(func(int, []api.AllocUpdate) error { return nil })
	q.push(upd("1.0.0", "2.0.0")...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := &sender{q: q, send: r.send, log: slog.New(slog.DiscardHandler), bo: newBackoff(time.Millisecond, time.Millisecond, 1), flushTimeout: time.Second}
	s.run(ctx)
	if diff := cmp.Diff([]string{"1.0.0", "2.0.0"}, flatten(r.ok)); diff != "" {
		t.Errorf("flushed (-want +got):\n%s", diff)
	}
}

func TestServersFailOverOnTransportErrorsAnd5xx(t *testing.T) {
	var hits [3]atomic.Int32
	// Server 0: nothing listens on its port any more.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits[1].Add(1)
		writeError(w, http.StatusServiceUnavailable, api.Error{Code: api.CodeUnavailable, Message: "no leader"})
	}))
	defer unavailable.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits[2].Add(1)
		if r.URL.Path != "/v1/agent/heartbeat" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer good.Close()

	s := newServers([]string{dead, unavailable.URL, good.URL}, slog.New(slog.DiscardHandler))
	hb := func(ctx context.Context, c *api.Client) error {
		_, err := c.Heartbeat(ctx, api.Heartbeat{Name: "n1", SessionID: "s"})
		return err
	}
	if err := s.do(context.Background(), "heartbeat", time.Second, hb); err != nil {
		t.Fatalf("first call: %v; want it answered by the third server", err)
	}
	if err := s.do(context.Background(), "heartbeat", time.Second, hb); err != nil {
		t.Fatalf("second call: %v", err)
	}
	if got := [2]int32{hits[1].Load(), hits[2].Load()}; got != [2]int32{1, 2} {
		t.Errorf("hits on (503 server, good server) = %v, want [1 2]: the second call should go straight to the server that answered", got)
	}
}

func TestServersDoNotFailOverOn4xx(t *testing.T) {
	var other atomic.Int32
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusBadRequest, api.Error{Code: api.CodeInvalid, Field: "name", Message: "required"})
	}))
	defer bad.Close()
	second := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { other.Add(1) }))
	defer second.Close()
	s := newServers([]string{bad.URL, second.URL}, slog.New(slog.DiscardHandler))
	err := s.do(context.Background(), "register", time.Second, func(ctx context.Context, c *api.Client) error {
		_, err := c.RegisterNode(ctx, api.NodeRegistration{})
		return err
	})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Field != "name" {
		t.Fatalf("error = %v, want the server's 400 on field name", err)
	}
	if other.Load() != 0 {
		t.Errorf("second server was called %d times; a 400 must not fail over", other.Load())
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	b := newBackoff(100*time.Millisecond, time.Second, 42)
	var prevMax time.Duration
	for i := range 20 {
		d := b.next()
		ceil := min(100*time.Millisecond<<i, time.Second)
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: delay %s outside [%s, %s]", i, d, ceil/2, ceil)
		}
		prevMax = max(prevMax, d)
	}
	if prevMax > time.Second {
		t.Errorf("delay %s exceeds the 1s cap", prevMax)
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset delay = %s, want at most the base 100ms", d)
	}
}
