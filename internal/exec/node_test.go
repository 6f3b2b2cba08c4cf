package exec

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Tests of the node supervisor daemon: what survives an agent restart and a
// daemon's death, and that one Dir never gets two daemons.

// nodeRunner makes a node-mode runner on dir; the harness it returns stops
// its tasks and the daemon at the end of the test.
func nodeRunner(t *testing.T, dir, cgMode, parent string) *harness {
	t.Helper()
	r, err := NewRunner(Config{Dir: dir, SupervisorCommand: supervisorCommand(t), Cgroups: cgMode, CgroupParent: parent,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return newHarnessWith(t, r)
}

// usableCgroups is "auto" where this machine gives cgroups, else "off".
func usableCgroups(parent string) string {
	if _, err := resolveCgroups(cgroupAuto, parent); err != nil {
		return cgroupOff
	}
	return cgroupAuto
}

// gated is a task that prints its pid, waits until gate exists, then exits code.
func gated(id, gate string, code int) TaskSpec {
	return shell(id, fmt.Sprintf(`echo $$; while [ ! -e %q ]; do sleep 0.01; done; exit %d`, gate, code))
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// processGone reports whether pid has exited (gone, or a zombie nobody reaped).
func processGone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(data), ')')
	return i < 0 || strings.HasPrefix(strings.TrimSpace(string(data[i+1:])), "Z")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) taskPid(id string) int {
	h.t.Helper()
	h.waitForOutput(id, "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(lines(h.readLog(id, stdoutFile))[0]))
	if err != nil {
		h.t.Fatal(err)
	}
	return pid
}

// An agent restart is a new Runner on the same Dir: it reconnects to the
// running daemon, which kept the tasks running and learnt their real exit
// codes, both for a task that ended while no runner was connected and for
// one that ends afterwards.
func TestRunnerRestartReattachesToRunningTasks(t *testing.T) {
	t.Parallel()
	dir, gates := t.TempDir(), t.TempDir()
	parent := cgroupParentName()
	mode := usableCgroups(parent)
	first := nodeRunner(t, dir, mode, parent)
	first.start(gated("ends-away", gates+"/a", 5))
	first.start(gated("ends-later", gates+"/b", 6))
	daemon := daemonPID(dir)
	if err := first.r.Close(); err != nil {
		t.Fatal(err)
	}
	if processGone(daemon) {
		t.Fatal("the daemon exited when its runner closed, with tasks running")
	}
	touch(t, gates+"/a")
	waitUntil(t, "ends-away has a status file", func() bool { _, ok := first.r.Finished("ends-away"); return ok })

	second := nodeRunner(t, dir, mode, parent)
	if got := daemonPID(dir); got != daemon {
		t.Errorf("the restarted runner uses daemon %d, want the running one %d", got, daemon)
	}
	got, err := second.r.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "ends-away" || got[0].Running || got[0].Result.ExitCode != 5 || got[0].Result.Lost != "" ||
		got[1].ID != "ends-later" || !got[1].Running {
		t.Fatalf("Recover = %+v, want ends-away ended with 5 and ends-later running", got)
	}
	second.ids = []string{"ends-later"}
	touch(t, gates+"/b")
	if res := second.wait("ends-later"); res.ExitCode != 6 || res.Lost != "" || res.StartedAt.IsZero() {
		t.Errorf("ends-later: %+v, want its real exit code 6", res)
	}
}

// A daemon killed with SIGKILL is replaced at once by its connected
// runner: the new daemon finds the tasks through its journal and keeps
// watching them by pid (they are no longer its children, so their exit
// status is lost: ExitCode -1 and why), enforces Stop, and takes new work.
func TestDaemonKilledTasksAreAdopted(t *testing.T) {
	t.Parallel()
	gates := t.TempDir()
	parent := cgroupParentName()
	h := nodeRunner(t, t.TempDir(), usableCgroups(parent), parent)
	startedAt := h.start(gated("ends", gates+"/a", 3))
	h.start(shell("stopped", "echo $$; exec sleep 300"))
	endsPid, stoppedPid := h.taskPid("ends"), h.taskPid("stopped")

	old := daemonPID(h.r.dir)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a new daemon runs both tasks", func() bool {
		pid := daemonPID(h.r.dir)
		if pid == old || pid == 0 {
			return false
		}
		rep, err := h.r.node.call(request{Op: opList}, nil)
		return err == nil && len(rep.Running) == 2
	})
	if processGone(endsPid) || processGone(stoppedPid) {
		t.Fatal("tasks died with their daemon")
	}

	touch(t, gates+"/a")
	res := h.wait("ends")
	if res.ExitCode != -1 || res.Lost != lostRestarted || !res.StartedAt.Equal(startedAt) {
		t.Errorf("ends: %+v, want ExitCode -1, Lost %q and the original start time %v", res, lostRestarted, startedAt)
	}
	if err := h.r.Stop("stopped", 0); err != nil {
		t.Fatal(err)
	}
	if res := h.wait("stopped"); !res.Stopped || res.ExitCode != -1 || res.Lost != lostRestarted {
		t.Errorf("stopped: %+v, want Stopped with ExitCode -1 and Lost", res)
	}
	waitUntil(t, "the stopped task is gone", func() bool { return processGone(stoppedPid) })
	for _, id := range []string{"ends", "stopped"} {
		for _, d := range h.r.cg.forTask(id).dirs() {
			if exists(d) {
				t.Errorf("cgroup %s left behind", d)
			}
		}
		if exists(filepath.Join(h.r.dir, id, scratchDir)) {
			t.Errorf("%s: scratch left behind", id)
		}
	}
	if res := h.run(shell("after", "exit 2")); res.ExitCode != 2 {
		t.Errorf("a task started on the new daemon: %+v, want exit code 2", res)
	}
}

// With no runner connected, a killed daemon is replaced by the next
// NewRunner: a task that ended meanwhile is recorded as ended with an
// unknown status; one still running is adopted.
func TestTaskEndedWhileNoDaemonRan(t *testing.T) {
	t.Parallel()
	dir, gates := t.TempDir(), t.TempDir()
	parent := cgroupParentName()
	mode := usableCgroups(parent)
	first := nodeRunner(t, dir, mode, parent)
	first.start(gated("ended", gates+"/a", 4))
	first.start(shell("running", "exec sleep 300"))
	endedPid := first.taskPid("ended")
	if err := first.r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(daemonPID(dir), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	touch(t, gates+"/a")
	waitUntil(t, "the gated task exited", func() bool { return processGone(endedPid) })

	second := nodeRunner(t, dir, mode, parent)
	got, err := second.r.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "ended" || got[0].Running || got[1].ID != "running" || !got[1].Running {
		t.Fatalf("Recover = %+v, want ended (ended) and running (running)", got)
	}
	if r := got[0].Result; r.ExitCode != -1 || !strings.HasPrefix(r.Lost, lostRestarted) {
		t.Errorf("ended: %+v, want ExitCode -1 and Lost starting %q", r, lostRestarted)
	}
	second.ids = []string{"running"}
	if err := second.r.Stop("running", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if res := second.wait("running"); !res.Stopped || res.ExitCode != -1 {
		t.Errorf("running: %+v, want Stopped with ExitCode -1", res)
	}
}

// Shutdown(true) kills the tasks and ends the daemon; Shutdown(false) ends
// the daemon and leaves the tasks to the next one.
func TestShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	parent := cgroupParentName()
	mode := usableCgroups(parent)
	first := nodeRunner(t, dir, mode, parent)
	first.start(shell("kept", "echo $$; exec sleep 300"))
	keptPid := first.taskPid("kept")
	daemon := daemonPID(dir)
	if err := first.r.Shutdown(false); err != nil {
		t.Fatal(err)
	}
	if !processGone(daemon) || daemonAlive(dir) {
		t.Fatal("Shutdown(false) returned with the daemon still running")
	}
	if processGone(keptPid) {
		t.Fatal("Shutdown(false) killed the task")
	}

	second := nodeRunner(t, dir, mode, parent)
	got, err := second.r.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]RecoveredTask{{ID: "kept", Running: true}}, got); diff != "" {
		t.Fatalf("Recover after Shutdown(false) (-want +got):\n%s", diff)
	}
	second.start(shell("killed", "echo $$; exec sleep 300"))
	killedPid := second.taskPid("killed")
	daemon = daemonPID(dir)
	if err := second.r.Shutdown(true); err != nil {
		t.Fatal(err)
	}
	if !processGone(daemon) || !processGone(keptPid) || !processGone(killedPid) {
		t.Error("Shutdown(true) returned with the daemon or a task still running")
	}
	for _, id := range []string{"kept", "killed"} {
		if res, ok := second.r.Finished(id); !ok || !res.Stopped {
			t.Errorf("%s after Shutdown(true): %+v, %v; want a status file saying Stopped", id, res, ok)
		}
	}
	if _, err := second.r.Start(shell("late", "true")); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Shutdown: %v, want ErrClosed", err)
	}
}

// Runners racing to start on a fresh Dir share one daemon; each gets the
// events of its own tasks only. A daemon started by hand next to a running
// one declines.
func TestOneDaemonPerDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 6
	runners := make([]*harness, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := NewRunner(Config{Dir: dir, SupervisorCommand: supervisorCommand(t), Cgroups: cgroupOff})
			errs[i] = err
			if err == nil {
				runners[i] = &harness{t: t, r: r, events: map[string]Result{}}
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		// Close all but one (a runner whose daemon goes away starts a new
		// one); the last shuts the daemon down.
		var last *harness
		for _, h := range runners {
			if h == nil {
				continue
			}
			if last != nil {
				last.r.Close()
			}
			last = h
		}
		if last != nil {
			last.cleanup()
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("runner %d: %v", i, err)
		}
	}
	if got := daemonsFor(dir); len(got) != 1 {
		t.Fatalf("daemons serving %s: %v, want exactly one", dir, got)
	}

	for i, h := range runners {
		h.start(shell("t"+strconv.Itoa(i), "exit "+strconv.Itoa(i)))
	}
	for i, h := range runners {
		if res := h.wait("t" + strconv.Itoa(i)); res.ExitCode != i {
			t.Errorf("runner %d: exit %d, want %d", i, res.ExitCode, i)
		}
	}
	for i, h := range runners {
		select {
		case ev := <-h.r.Events():
			t.Errorf("runner %d got an event for a task it did not start: %+v", i, ev)
		default:
		}
	}

	// A second daemon for the same Dir says so and exits.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(supervisorCommand(t)[0], "__supervise", nodeFlag, dir)
	cmd.ExtraFiles = []*os.File{pw}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	line, _ := bufio.NewReader(pr).ReadString('\n')
	pr.Close()
	if err := cmd.Wait(); err != nil || strings.TrimSpace(line) != handshakeLocked {
		t.Errorf("second daemon: said %q and exited with %v, want %q and success", line, err, handshakeLocked)
	}
}

// daemonsFor lists the pids of node daemons for dir.
func daemonsFor(dir string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.HasSuffix(string(cmdline), "\x00"+nodeFlag+"\x00"+dir+"\x00") {
			out = append(out, pid)
		}
	}
	return out
}

// On cgroup v1 a task is forked by one thread of the supervisor that
// joins the task's cgroups and returns: the task must be in its cgroups,
// and no thread of the supervisor may be left in them, also with many
// starts at once.
func TestV1ForkLeavesSupervisorThreadsHome(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupV1, true)
		const n = 8
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				spec := shell("v1-"+strconv.Itoa(i), "cat /proc/self/cgroup; echo ready; exec sleep 60")
				spec.MilliCPU, spec.MemoryBytes = 500, 64<<20
				h.start(spec)
			})
		}
		wg.Wait()
		cpuMount, memMount := mustMount(t, "cpu"), mustMount(t, "memory")
		for i := range n {
			id := "v1-" + strconv.Itoa(i)
			h.waitForOutput(id, "ready")
			cg := h.r.cg.forTask(id)
			out := h.readLog(id, stdoutFile)
			for _, c := range []struct{ ctl, dir, mount string }{{"cpu", cg.CPUDir, cpuMount}, {"memory", cg.MemoryDir, memMount}} {
				if want := ":" + c.ctl + ":" + strings.TrimPrefix(c.dir, c.mount) + "\n"; !strings.Contains(out, want) {
					t.Errorf("%s is not in its %s cgroup %s:\n%s", id, c.ctl, c.dir, out)
				}
			}
		}
		sups := map[int]bool{}
		for i := range n {
			sups[supervisorPID(h.r, "v1-"+strconv.Itoa(i))] = true
		}
		homes := map[string]string{"cpu": strings.TrimPrefix(h.r.cg.cpuHome, cpuMount), "memory": strings.TrimPrefix(h.r.cg.memoryHome, memMount)}
		for pid := range sups {
			threads, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
			if err != nil {
				t.Fatal(err)
			}
			for _, th := range threads {
				data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/cgroup", pid, th.Name()))
				if err != nil {
					continue // the thread ended
				}
				for _, line := range strings.Split(string(data), "\n") {
					parts := strings.SplitN(line, ":", 3)
					if len(parts) == 3 && homes[parts[1]] != "" && parts[2] != homes[parts[1]] {
						t.Errorf("supervisor %d thread %s is in %s cgroup %s, want its home %s", pid, th.Name(), parts[1], parts[2], homes[parts[1]])
					}
				}
			}
		}
		for i := range n {
			cg := h.r.cg.forTask("v1-" + strconv.Itoa(i))
			for _, d := range []string{cg.CPUDir, cg.MemoryDir} {
				data, err := os.ReadFile(filepath.Join(d, "tasks"))
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range strings.Fields(string(data)) {
					if tid, _ := strconv.Atoi(f); sups[tid] || threadOf(tid, sups) {
						t.Errorf("task cgroup %s holds supervisor thread %d", d, tid)
					}
				}
			}
		}
	})
}

// threadOf reports whether tid is a thread of one of the processes.
func threadOf(tid int, procs map[int]bool) bool {
	for pid := range procs {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid)); err == nil {
			return true
		}
	}
	return false
}

// Many goroutines starting at once (the agent allows 16): every task runs
// once and is reported once, with its own exit code.
func TestConcurrentStarts(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		const n, workers = 48, 16
		ids := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range ids {
					h.start(shell("c"+strconv.Itoa(i), "exit "+strconv.Itoa(i%7)))
				}
			})
		}
		for i := range n {
			ids <- i
		}
		close(ids)
		wg.Wait()
		for i := range n {
			if res := h.wait("c" + strconv.Itoa(i)); res.ExitCode != i%7 {
				t.Errorf("c%d: exit %d, want %d", i, res.ExitCode, i%7)
			}
		}
	})
}

// A runner that closes with no task running leaves no daemon behind.
func TestIdleDaemonExitsWithItsLastRunner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := nodeRunner(t, dir, cgroupOff, cgroupParentName())
	h.run(shell("done", "true"))
	daemon := daemonPID(dir)
	if err := h.r.Close(); err != nil {
		t.Fatal(err)
	}
	if !processGone(daemon) || daemonAlive(dir) {
		t.Errorf("daemon %d still runs after its last runner closed with no tasks", daemon)
	}
	if exists(filepath.Join(dir, socketFile)) {
		t.Error("the socket file outlived the daemon")
	}
}

// A Dir whose path is too long for a unix socket address still works.
func TestLongDirPath(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	h := nodeRunner(t, dir, cgroupOff, cgroupParentName())
	if res := h.run(shell("long", "exit 9")); res.ExitCode != 9 {
		t.Errorf("got %+v, want exit code 9", res)
	}
}

// A daemon refuses clients that speak another protocol version.
func TestDaemonRefusesOtherProtocolVersions(t *testing.T) {
	t.Parallel()
	h := nodeRunner(t, t.TempDir(), cgroupOff, cgroupParentName())
	conn, err := dialUnix(filepath.Join(h.r.dir, socketFile))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	frame, _ := appendFrame(nil, request{Seq: 1, Op: opHello, Version: protoVersion + 1})
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	data, err := readFrame(bufio.NewReader(conn))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := decodeReply(data)
	if err != nil || !strings.Contains(rep.Err, "protocol version") {
		t.Errorf("reply %+v, %v; want an error about the protocol version", rep, err)
	}
}

// An agent switched from task to node mode keeps the tasks its per-task
// supervisors run: Recover follows them, Stop reaches them.
func TestSwitchingToNodeModeKeepsRunningTasks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := NewRunner(Config{Dir: dir, SupervisorCommand: supervisorCommand(t), Cgroups: cgroupOff, Supervisor: SupervisorTask})
	if err != nil {
		t.Fatal(err)
	}
	first := newHarnessWith(t, r)
	first.start(shell("old", "exec sleep 300"))
	if err := first.r.Close(); err != nil {
		t.Fatal(err)
	}
	second := nodeRunner(t, dir, cgroupOff, cgroupParentName())
	got, err := second.r.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]RecoveredTask{{ID: "old", Running: true}}, got); diff != "" {
		t.Fatalf("Recover (-want +got):\n%s", diff)
	}
	second.ids = []string{"old"}
	if err := second.r.Stop("old", 0); err != nil {
		t.Fatal(err)
	}
	if res := second.wait("old"); !res.Stopped || res.Signal != "SIGTERM" {
		t.Errorf("got %+v, want Stopped by SIGTERM", res)
	}
	// Its supervisor was the first runner's child; reap it.
	if pid, ok := readPid(filepath.Join(dir, "old")); ok {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	}
}

// The daemon is the subreaper of its tasks' orphans: one that outlives its
// task (it left the task's process group, and no cgroup holds it) is
// reaped when it exits, not left a zombie, and the reaping of strays never
// takes a task's exit status.
func TestNodeDaemonReapsOrphansOfTasks(t *testing.T) {
	t.Parallel()
	h := nodeRunner(t, t.TempDir(), cgroupOff, "")
	// The task ends once the orphan has left its process group (field 5
	// of /proc/<pid>/stat), so that the group kill at its end misses it.
	h.start(shell("parent", `setsid sleep 1 & p=$!; echo $p
while set -- $(cat /proc/$p/stat) && [ "$5" = "$$" ]; do sleep 0.01; done; exit 3`))
	orphan := h.taskPid("parent")
	if res := h.wait("parent"); res.ExitCode != 3 || res.Signal != "" {
		t.Fatalf("parent: %+v, want exit code 3", res)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(orphan)); err != nil {
		t.Fatalf("the orphan %d ended with its task; this test needs it to outlive the task: %v", orphan, err)
	}
	waitUntil(t, "the orphan is reaped", func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(orphan))
		return errors.Is(err, os.ErrNotExist)
	})
	h.start(shell("after", `exit 4`))
	if res := h.wait("after"); res.ExitCode != 4 {
		t.Fatalf("after: %+v, want exit code 4", res)
	}
}

// A task gets the timer slack the daemon was started with (the runner's),
// not the coarser one the daemon gives its own threads, whichever cgroup
// driver forks it.
func TestTaskTimerSlackIsTheRunners(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		t.Skip(err)
	}
	probe := cgroupParentName()
	t.Cleanup(func() { RemoveCgroupTree(probe) }) // usableCgroups makes it
	for _, mode := range []string{cgroupOff, usableCgroups(probe)} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			parent := cgroupParentName()
			h := nodeRunner(t, t.TempDir(), mode, parent)
			for i := range 3 { // forks from more than one thread
				id := "slack-" + strconv.Itoa(i)
				if res := h.run(shell(id, "cat /proc/self/timerslack_ns")); res.ExitCode != 0 {
					t.Fatalf("%s: %+v", id, res)
				}
				if got := h.readLog(id, "stdout"); got != string(want) {
					t.Errorf("%s: timer slack %q; want the runner's %q", id, got, want)
				}
			}
		})
	}
}
