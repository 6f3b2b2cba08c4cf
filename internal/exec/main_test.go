package exec

import (
	"bufio"
	"errors"
	"flag"
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
//	exec.test __supervise TASKDIR     the per-task supervisor (SupervisorMain)
//	exec.test __supervise --node DIR  the node supervisor daemon (SupervisorMain)
//	exec.test __alloc MiB             touches MiB of memory, then exits 0
//	exec.test __runner DIR PARENT MODE SUP FIFO   a runner process that starts one task and blocks
//
// Every test runs its runners' temporary directories under one root, and
// TestMain checks at the end that no process of the tests is left: no
// supervisor or daemon (this binary) and no task (working directory under
// the root).
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
	root, err := os.MkdirTemp("", "dure-exec-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", root) // t.TempDir() and b.TempDir() live under root
	code := m.Run()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(code) // a fuzz worker: its coordinator (this binary too) checks
	}
	if left := leftoverProcesses(root); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests left %d process(es) behind (now killed):\n", len(left))
		for _, p := range left {
			fmt.Fprintln(os.Stderr, "  ", p)
		}
		code = 1
	}
	os.RemoveAll(root)
	os.Exit(code)
}

// leftoverProcesses finds (and SIGKILLs) processes of this test run: copies
// of this binary other than ourselves, and anything whose working directory
// is under root. Zombies have neither and are not counted.
func leftoverProcesses(root string) []string {
	self, _ := os.Executable()
	parent := os.Getppid()
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || pid == parent {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if (self != "" && exe == self) || cwd == root || strings.HasPrefix(cwd, root+"/") {
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			out = append(out, fmt.Sprintf("pid %d: %s (cwd %s)", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "), cwd))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return out
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
	dir, parent, mode, sup, fifo := args[0], args[1], args[2], args[3], args[4]
	exe, _ := os.Executable()
	r, err := NewRunner(Config{Dir: dir, SupervisorCommand: []string{exe, "__supervise"}, Cgroups: mode, CgroupParent: parent, Supervisor: sup})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if _, err := r.Start(TaskSpec{ID: "survivor", Command: []string{"sh", "-c", "read x < " + fifo + "; exit 7"}, Env: []string{"PATH=" + os.Getenv("PATH")}}); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("started", supervisorPID(r, "survivor"))
	select {}
}

// supervisorPID is the pid of the process supervising task id: its own
// supervisor (task mode) or the daemon (node mode); 0 if unknown.
func supervisorPID(r *Runner, id string) int {
	if r.mode == SupervisorTask {
		pid, _ := readPid(filepath.Join(r.dir, id))
		return pid
	}
	return daemonPID(r.dir)
}

// daemonPID reads the node daemon's pid from its lock file.
func daemonPID(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, lockFile))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// modes are the supervisor modes every behaviour test runs in.
var modes = []string{SupervisorNode, SupervisorTask}

// eachMode runs f as a parallel subtest per supervisor mode.
func eachMode(t *testing.T, f func(t *testing.T, sup string)) {
	t.Parallel()
	for _, sup := range modes {
		t.Run(sup, func(t *testing.T) {
			t.Parallel()
			f(t, sup)
		})
	}
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

// newHarness makes a runner with the given supervisor and cgroup modes. With
// requireCgroups false it falls back to "off" where cgroups cannot be used
// (not root, …).
func newHarness(t *testing.T, sup, mode string, requireCgroups bool) *harness {
	t.Helper()
	cfg := Config{
		Dir:               t.TempDir(),
		SupervisorCommand: supervisorCommand(t),
		Supervisor:        sup,
		Cgroups:           mode,
		CgroupParent:      cgroupParentName(),
		Logger:            testLogger(t),
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

// testLogger routes a runner's logs to t.Log until the test ends (a
// runner's reader may log after that, e.g. while its daemon shuts down).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
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

// cleanup stops every task still running, waits for them, shuts the runner
// (and its daemon) down and removes the cgroup parents.
func (h *harness) cleanup() {
	h.mu.Lock()
	ids := append([]string(nil), h.ids...)
	h.mu.Unlock()
	for _, id := range ids {
		if _, ok := h.r.Finished(id); ok {
			continue
		}
		err := h.r.Stop(id, time.Millisecond)
		if errors.Is(err, ErrUnknownTask) || errors.Is(err, ErrClosed) {
			continue // removed or closed by the test
		}
		if err != nil {
			h.t.Errorf("cleanup: Stop(%s): %v", id, err)
			continue
		}
		h.wait(id)
	}
	if err := h.r.Shutdown(true); errors.Is(err, ErrClosed) {
		stopDaemon(h.t, h.r.dir)
	} else if err != nil {
		h.t.Errorf("cleanup: Shutdown: %v", err)
	}
	removeCgroupParent(h.t, h.r.cg)
}

// stopDaemon shuts down a node daemon still serving dir (its runner was
// closed), killing its tasks.
func stopDaemon(t testing.TB, dir string) {
	if !daemonAlive(dir) {
		return
	}
	r, err := NewRunner(Config{Dir: dir, SupervisorCommand: supervisorCommand(t), Cgroups: cgroupOff})
	if err != nil {
		t.Errorf("cleanup: reaching the daemon: %v", err)
		return
	}
	if err := r.Shutdown(true); err != nil {
		t.Errorf("cleanup: Shutdown: %v", err)
	}
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
