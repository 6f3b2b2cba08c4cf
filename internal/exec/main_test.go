package exec

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the supervisor and as small helper programs, so
// the tests need no dure binary:
//
//	exec.test __supervise TASKDIR     the supervisor (SupervisorMain)
//	exec.test __alloc MiB             touches MiB of memory, then exits 0
//	exec.test __runner DIR PARENT MODE FIFO   a runner process that starts one task and blocks
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "__supervise":
			os.Exit(SupervisorMain(os.Args[2:]))
		case "__alloc":
			os.Exit(allocHelper(os.Args[2:]))
		case "__runner":
			os.Exit(runnerHelper(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

func allocHelper(args []string) int {
	mib, err := strconv.Atoi(args[0])
	if err != nil {
		return 2
	}
	var keep [][]byte
	for range mib {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1 // touch every page so it is really charged
		}
		keep = append(keep, b)
	}
	runtime.KeepAlive(keep)
	fmt.Println("allocated", mib, "MiB")
	return 0
}

// runnerHelper plays an agent: it starts a task that waits on FIFO and exits
// 7, prints "started <supervisor pid>", and blocks until killed.
func runnerHelper(args []string) int {
	dir, parent, mode, fifo := args[0], args[1], args[2], args[3]
	exe, _ := os.Executable()
	r, err := NewRunner(Config{Dir: dir, SupervisorCommand: []string{exe, "__supervise"}, Cgroups: mode, CgroupParent: parent})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if _, err := r.Start(TaskSpec{ID: "survivor", Command: []string{"sh", "-c", "read x < " + fifo + "; exit 7"}, Env: []string{"PATH=" + os.Getenv("PATH")}}); err != nil {
		fmt.Println("error", err)
		return 1
	}
	pid, _ := readPid(filepath.Join(dir, "survivor"))
	fmt.Println("started", pid)
	select {}
}

var testSeq atomic.Int64

// harness is one runner for one test, with everything it made cleaned up.
type harness struct {
	t  *testing.T
	r  *Runner
	mu sync.Mutex
	// ids started through h.start; cleanup stops the ones still running.
	ids    []string
	events map[string]Result
}

// cgroupParentName is unique per test so parallel tests never collide.
func cgroupParentName() string {
	return fmt.Sprintf("dure-test-%d-%d", os.Getpid(), testSeq.Add(1))
}

func supervisorCommand(t testing.TB) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, "__supervise"}
}

// newHarness makes a runner with the given cgroup mode. With requireCgroups
// false it falls back to "off" where cgroups cannot be used (not root, …).
func newHarness(t *testing.T, mode string, requireCgroups bool) *harness {
	t.Helper()
	cfg := Config{
		Dir:               t.TempDir(),
		SupervisorCommand: supervisorCommand(t),
		Cgroups:           mode,
		CgroupParent:      cgroupParentName(),
		Logger:            slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	r, err := NewRunner(cfg)
	if err != nil && !requireCgroups {
		t.Logf("cgroups unavailable, running without: %v", err)
		cfg.Cgroups = cgroupOff
		r, err = NewRunner(cfg)
	}
	if err != nil {
		if requireCgroups {
			t.Skipf("this machine gives no usable cgroups (%v)", err)
		}
		t.Fatal(err)
	}
	h := &harness{t: t, r: r, events: map[string]Result{}}
	t.Cleanup(h.cleanup)
	return h
}

// newHarnessWith wraps an already made runner (custom cgroup parent).
func newHarnessWith(t *testing.T, r *Runner) *harness {
	h := &harness{t: t, r: r, events: map[string]Result{}}
	t.Cleanup(h.cleanup)
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (h *harness) start(spec TaskSpec) time.Time {
	h.t.Helper()
	if spec.Env == nil {
		spec.Env = []string{"PATH=" + os.Getenv("PATH")}
	}
	at, err := h.r.Start(spec)
	if err != nil {
		h.t.Fatalf("Start(%s): %v", spec.ID, err)
	}
	h.mu.Lock()
	h.ids = append(h.ids, spec.ID)
	h.mu.Unlock()
	return at
}

// wait returns the Result from the TaskEvent for id.
func (h *harness) wait(id string) Result {
	h.t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		h.mu.Lock()
		res, ok := h.events[id]
		h.mu.Unlock()
		if ok {
			return res
		}
		select {
		case ev, ok := <-h.r.Events():
			if !ok {
				h.t.Fatalf("Events closed while waiting for %s", id)
			}
			h.mu.Lock()
			if _, dup := h.events[ev.ID]; dup {
				h.t.Errorf("second TaskEvent for %s", ev.ID)
			}
			h.events[ev.ID] = ev.Result
			h.mu.Unlock()
		case <-deadline:
			h.t.Fatalf("no TaskEvent for %s within 2 minutes", id)
		}
	}
}

// run starts spec and waits for it to end.
func (h *harness) run(spec TaskSpec) Result {
	h.t.Helper()
	h.start(spec)
	return h.wait(spec.ID)
}

func (h *harness) readLog(id, stream string) string {
	h.t.Helper()
	data, err := os.ReadFile(h.r.LogPath(id, stream))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(data)
}

// waitForOutput polls id's stdout until it contains want (the task tells us
// it reached a point; there is no other channel to it).
func (h *harness) waitForOutput(id, want string) {
	h.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(h.readLogQuiet(id, stdoutFile), want) {
		if time.Now().After(deadline) {
			h.t.Fatalf("task %s never printed %q; stdout so far: %q", id, want, h.readLogQuiet(id, stdoutFile))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) readLogQuiet(id, stream string) string {
	data, _ := os.ReadFile(h.r.LogPath(id, stream))
	return string(data)
}

// cleanup stops every task still running, waits for them, closes the runner
// and removes the cgroup parents.
func (h *harness) cleanup() {
	h.mu.Lock()
	ids := append([]string(nil), h.ids...)
	h.mu.Unlock()
	for _, id := range ids {
		if _, ok := h.r.Finished(id); ok {
			continue
		}
		err := h.r.Stop(id, time.Millisecond)
		if errors.Is(err, ErrUnknownTask) {
			continue // removed by the test
		}
		if err != nil {
			h.t.Errorf("cleanup: Stop(%s): %v", id, err)
			continue
		}
		h.wait(id)
	}
	if err := h.r.Close(); err != nil {
		h.t.Errorf("cleanup: Close: %v", err)
	}
	removeCgroupParent(h.t, h.r.cg)
}

// removeCgroupParent removes a test's cgroup parents. Task cgroups still in
// them (a failed test) are emptied with SIGKILL and removed first, so even a
// failing test leaves no process or cgroup behind.
func removeCgroupParent(t testing.TB, p cgroupParent) {
	for _, d := range []string{p.dir, p.cpuDir, p.memoryDir} {
		if d == "" {
			continue
		}
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			left := cgroupSpec{Driver: cgroupV2, Dir: filepath.Join(d, e.Name())} // v2 and v1 alike: kill what cgroup.procs lists
			if d != p.dir {
				left.Driver = cgroupV1
				left.MemoryDir = left.Dir
				left.CPUDir = left.Dir
			}
			t.Errorf("cleanup: task cgroup %s was left behind", left.Dir)
			_ = killCgroup(left)
			_ = syscall.Rmdir(left.Dir)
		}
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("cleanup: removing cgroup parent %s: %v", d, err)
		}
	}
}

// shell is a TaskSpec running script with sh -c.
func shell(id, script string) TaskSpec {
	return TaskSpec{ID: id, Command: []string{"sh", "-c", script}}
}

// lines reads a file into lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
