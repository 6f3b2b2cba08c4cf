package server_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/server"
	"github.com/durehq/dure/internal/testkit"
)

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testLog routes server logs to t.Log until the test's cleanup has shut the
// server down (raft may log on its way out).
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *testLog) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// config is a server config for a test: loopback, bootstrap, quiet unless
// something goes wrong, nodes given a minute of heartbeat grace.
func config(t testing.TB, dir string) server.Config {
	return server.Config{
		Name: "s1", DataDir: dir, RaftBind: freeAddr(t), Bootstrap: true,
		HeartbeatInterval: time.Second, HeartbeatTimeout: time.Minute,
	}
}

// start starts a server and waits until it leads. The server is shut down
// at the end of the test; stopping it earlier is fine.
func start(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	w := &testLog{t: t}
	cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := server.New(cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		w.stop()
	})
	waitFor(t, "the server to lead", s.IsLeader)
	return s
}

// waitFor polls cond until it holds, failing the test after 15 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

func register(t testing.TB, s *server.Server, name string, cpus int) {
	t.Helper()
	n := testkit.Node(name).CPU(cpus).Mem("8G").Address(name + ":7072").Build()
	n.SessionID = "sess-" + name
	if err := s.RegisterNode(ctx(t), *n); err != nil {
		t.Fatalf("RegisterNode(%s): %v", name, err)
	}
}

// submit submits a job of tasks one-core tasks.
func submit(t *testing.T, s *server.Server, tasks, retries int) model.JobID {
	t.Helper()
	j := testkit.Job(0).Tasks(tasks).MaxRetries(retries).Build()
	id, err := s.SubmitJob(ctx(t), *j)
	if err != nil {
		t.Fatalf("SubmitJob: %v", err)
	}
	return id
}

func jobState(s *server.Server, id model.JobID) model.JobState {
	if j := s.Store().Snapshot().Job(id); j != nil {
		return j.State
	}
	return ""
}
