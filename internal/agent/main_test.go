package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/exec"
)

// The test binary doubles as the task supervisor (as in internal/exec's
// tests): `agent.test __supervise TASKDIR` runs exec.SupervisorMain.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "__supervise" {
		os.Exit(exec.SupervisorMain(os.Args[2:]))
	}
	// Run must leave no goroutine behind when it returns.
	goleak.VerifyTestMain(m)
}

func supervisorCommand(t testing.TB) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, "__supervise"}
}

// testLogger routes logs to t.Log until the test ends.
type testLogger struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func newTestLogger(t testing.TB) *slog.Logger {
	w := &testLogger{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testAgent is one agent process-equivalent running in the test.
type testAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan error
}

// stop ends Run (tasks keep running) and returns its error.
func (ta *testAgent) stop(t testing.TB) {
	t.Helper()
	ta.cancel()
	select {
	case err := <-ta.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil after cancel", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func testConfig(t testing.TB, servers ...string) Config {
	two := 2
	return Config{
		Name:         "node1",
		Servers:      servers,
		Listen:       "127.0.0.1:0",
		DataDir:      t.TempDir(),
		Labels:       map[string]string{"pool": "test", "rack": "r1"},
		MilliCPU:     2000,
		MemoryBytes:  1 << 30,
		ScratchBytes: 1 << 30,
		GPUs:         &two,
		Exec:         exec.Config{SupervisorCommand: supervisorCommand(t), Cgroups: "off"},
		KillGrace:    2 * time.Second,
		Logger:       newTestLogger(t),
		Version:      "test-1",
	}
}

// startAgent runs an agent until the test ends, then stops it and every task
// it left running.
func startAgent(t testing.TB, cfg Config) *testAgent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Run(ctx) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-ta.done
		}
		killLeftovers(t, a.cfg.Exec.Dir)
	})
	ta.cancel = func() { stopped = true; cancel() }
	return ta
}

// killLeftovers stops every task still running in dir, the way an operator
// would: a fresh runner recovers them and stops them.
func killLeftovers(t testing.TB, dir string) {
	r, err := exec.NewRunner(exec.Config{Dir: dir, SupervisorCommand: supervisorCommand(t), Cgroups: "off"})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer r.Close()
	rec, err := r.Recover()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	running := 0
	for _, x := range rec {
		if x.Running {
			running++
			if err := r.Stop(x.ID, 100*time.Millisecond); err != nil {
				t.Errorf("cleanup: stop %s: %v", x.ID, err)
			}
		}
	}
	for range running {
		select {
		case <-r.Events():
		case <-time.After(20 * time.Second):
			t.Errorf("cleanup: tasks in %s did not stop", dir)
			return
		}
	}
}

// getLogs fetches a task's log from the agent's endpoint.
func getLogs(t testing.TB, a *testAgent, id, query string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr() + LogPathPrefix + id + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func shellAlloc(id string, script string) api.Allocation {
	return api.Allocation{
		ID: id, JobID: 1, Node: "node1", TaskCount: 1, JobName: "test",
		Command: []string{"sh", "-c", script},
	}
}

// waitGone waits until path stops existing.
func waitFile(t testing.TB, path string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 && strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b))
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not written", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func touch(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func gatePath(t testing.TB) string { return filepath.Join(t.TempDir(), "gate") }
