package exec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestExitStatus(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		tests := []struct {
			name       string
			script     string
			wantCode   int
			wantSignal string
		}{
			{"success", "true", 0, ""},
			{"exit 3", "exit 3", 3, ""},
			{"killed by SIGKILL", "kill -KILL $$", 137, "SIGKILL"},
			{"killed by SIGTERM", "kill -TERM $$", 143, "SIGTERM"},
		}
		for i, tt := range tests {
			id := "exit-" + string(rune('a'+i))
			res := h.run(shell(id, tt.script))
			if res.ExitCode != tt.wantCode || res.Signal != tt.wantSignal {
				t.Errorf("%s: got exit %d signal %q, want %d %q", tt.name, res.ExitCode, res.Signal, tt.wantCode, tt.wantSignal)
			}
			if res.OOMKilled || res.TimedOut || res.Stopped || res.StartErr != "" {
				t.Errorf("%s: unexpected flags in %+v", tt.name, res)
			}
			if res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
				t.Errorf("%s: times: started %v finished %v", tt.name, res.StartedAt, res.FinishedAt)
			}
			// The status file says the same as the event: it is the record a
			// restarted agent reads.
			if got, ok := h.r.Finished(id); !ok || !got.FinishedAt.Equal(res.FinishedAt) || got.ExitCode != res.ExitCode {
				t.Errorf("%s: Finished = %+v, %v; event said %+v", tt.name, got, ok, res)
			}
		}
	})
}

func TestStdoutAndStderrAreCaptured(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		h.start(shell("logs", "echo to-out; echo to-err >&2; echo more-out"))
		// The files exist from Start on.
		for _, s := range []string{"stdout", "stderr"} {
			if !exists(h.r.LogPath("logs", s)) {
				t.Errorf("%s file missing right after Start", s)
			}
		}
		if res := h.wait("logs"); res.ExitCode != 0 {
			t.Fatalf("exit %d", res.ExitCode)
		}
		if got, want := h.readLog("logs", "stdout"), "to-out\nmore-out\n"; got != want {
			t.Errorf("stdout = %q, want %q", got, want)
		}
		if got, want := h.readLog("logs", "stderr"), "to-err\n"; got != want {
			t.Errorf("stderr = %q, want %q", got, want)
		}
		if got := h.r.LogPath("logs", "other"); got != "" {
			t.Errorf("LogPath(other stream) = %q, want empty", got)
		}
		if got := h.r.LogPath("../x", "stdout"); got != "" {
			t.Errorf("LogPath(bad id) = %q, want empty", got)
		}
	})
}

func TestTaskEnvironment(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		script := `echo "FOO=$FOO"
	echo "CUDA=${CUDA_VISIBLE_DEVICES-unset}"
	echo "NVIDIA=${NVIDIA_VISIBLE_DEVICES-unset}"
	echo "SCRATCH=$DURE_SCRATCH"
	test -d "$DURE_SCRATCH" && echo scratch-is-dir
	echo data > "$DURE_SCRATCH/file" && echo scratch-writable
	echo "PWD=$(pwd)"`
		tests := []struct {
			name     string
			gpus     []int
			env      []string
			wantCUDA string
		}{
			{"two GPUs", []int{0, 2}, nil, "0,2"},
			{"no GPUs hides all", nil, nil, ""},
			{"task env cannot override GPU visibility", []int{1}, []string{"CUDA_VISIBLE_DEVICES=5", "NVIDIA_VISIBLE_DEVICES=all", "DURE_SCRATCH=/tmp"}, "1"},
		}
		for i, tt := range tests {
			id := "env-" + string(rune('a'+i))
			spec := shell(id, script)
			spec.GPUIndices = tt.gpus
			spec.Env = append([]string{"PATH=" + os.Getenv("PATH"), "FOO=bar baz"}, tt.env...)
			if res := h.run(spec); res.ExitCode != 0 {
				t.Fatalf("%s: exit %d, stderr %q", tt.name, res.ExitCode, h.readLog(id, "stderr"))
			}
			taskDir := filepath.Join(h.r.dir, id)
			scratch := filepath.Join(taskDir, "scratch")
			want := []string{
				"FOO=bar baz",
				"CUDA=" + tt.wantCUDA,
				"NVIDIA=" + tt.wantCUDA,
				"SCRATCH=" + scratch,
				"scratch-is-dir",
				"scratch-writable",
				"PWD=" + taskDir,
			}
			if diff := cmp.Diff(want, lines(h.readLog(id, "stdout"))); diff != "" {
				t.Errorf("%s: task output (-want +got):\n%s", tt.name, diff)
			}
			if exists(scratch) {
				t.Errorf("%s: scratch directory %s still exists after the task ended", tt.name, scratch)
			}
			if !exists(h.r.LogPath(id, "stdout")) {
				t.Errorf("%s: logs must stay after the task ended", tt.name)
			}
		}
	})
}

func TestWorkDir(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		wd := t.TempDir()
		spec := shell("wd", "pwd")
		spec.WorkDir = wd
		if res := h.run(spec); res.ExitCode != 0 {
			t.Fatalf("exit %d", res.ExitCode)
		}
		if got := strings.TrimSpace(h.readLog("wd", "stdout")); got != wd {
			t.Errorf("pwd = %q, want %q", got, wd)
		}
	})
}

func TestCommandThatCannotStart(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		notExec := filepath.Join(t.TempDir(), "script")
		if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name     string
			spec     TaskSpec
			wantCode int
			wantErr  string
		}{
			{"missing binary in PATH", TaskSpec{ID: "nf-a", Command: []string{"no-such-program-dure"}}, 127, "not found"},
			{"missing absolute path", TaskSpec{ID: "nf-b", Command: []string{"/no/such/program"}}, 127, "no such file"},
			{"not executable", TaskSpec{ID: "nf-c", Command: []string{notExec}}, 126, "permission denied"},
			{"missing work dir", TaskSpec{ID: "nf-d", Command: []string{"true"}, WorkDir: "/no/such/dir"}, 127, "work dir"},
		}
		for _, tt := range tests {
			startedAt := h.start(tt.spec) // not an error: the task ends at once
			if startedAt.IsZero() {
				t.Errorf("%s: Start returned a zero time", tt.name)
			}
			res := h.wait(tt.spec.ID)
			if res.ExitCode != tt.wantCode || !strings.Contains(res.StartErr, tt.wantErr) {
				t.Errorf("%s: got exit %d StartErr %q, want %d and an error containing %q", tt.name, res.ExitCode, res.StartErr, tt.wantCode, tt.wantErr)
			}
			if exists(filepath.Join(h.r.dir, tt.spec.ID, "scratch")) {
				t.Errorf("%s: scratch left behind", tt.name)
			}
		}
	})
}

func TestStartTwiceIsRefused(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		h.run(shell("once", "true"))
		if _, err := h.r.Start(shell("once", "true")); !errors.Is(err, ErrAlreadyStarted) {
			t.Errorf("second Start after the end: err = %v, want ErrAlreadyStarted", err)
		}
		// Another runner on the same directory (a restarted agent) refuses too.
		r2, err := NewRunner(Config{Dir: h.r.dir, SupervisorCommand: supervisorCommand(t), Cgroups: cgroupOff, Supervisor: sup})
		if err != nil {
			t.Fatal(err)
		}
		defer r2.Close()
		if _, err := r2.Start(shell("once", "true")); !errors.Is(err, ErrAlreadyStarted) {
			t.Errorf("Start in a second runner: err = %v, want ErrAlreadyStarted", err)
		}
		// And while running.
		h.start(shell("running", "exec sleep 60"))
		if _, err := h.r.Start(shell("running", "true")); !errors.Is(err, ErrAlreadyStarted) {
			t.Errorf("second Start while running: err = %v, want ErrAlreadyStarted", err)
		}
	})
}

func TestRemove(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		h.start(shell("rm", "exec sleep 60"))
		if err := h.r.Remove("rm"); !errors.Is(err, ErrTaskRunning) {
			t.Errorf("Remove while running: err = %v, want ErrTaskRunning", err)
		}
		if err := h.r.Stop("rm", 0); err != nil {
			t.Fatal(err)
		}
		h.wait("rm")
		if err := h.r.Remove("rm"); err != nil {
			t.Fatalf("Remove after the end: %v", err)
		}
		if exists(filepath.Join(h.r.dir, "rm")) {
			t.Error("task directory still exists after Remove")
		}
		if _, ok := h.r.Finished("rm"); ok {
			t.Error("Finished reports a removed task")
		}
		if err := h.r.Remove("rm"); !errors.Is(err, ErrUnknownTask) {
			t.Errorf("second Remove: err = %v, want ErrUnknownTask", err)
		}
	})
}

func TestStop(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		t.Run("SIGTERM ends a cooperative task", func(t *testing.T) {
			h.start(shell("stop-a", "exec sleep 60"))
			if err := h.r.Stop("stop-a", 0); err != nil {
				t.Fatal(err)
			}
			if err := h.r.Stop("stop-a", 0); err != nil { // idempotent
				t.Fatalf("second Stop: %v", err)
			}
			res := h.wait("stop-a")
			if !res.Stopped || res.TimedOut || res.Signal != "SIGTERM" || res.ExitCode != 143 {
				t.Errorf("got %+v, want Stopped by SIGTERM (143)", res)
			}
			if err := h.r.Stop("stop-a", 0); err != nil {
				t.Errorf("Stop after the end: %v", err)
			}
		})
		t.Run("SIGKILL after grace for a task ignoring SIGTERM", func(t *testing.T) {
			h.start(shell("stop-b", `trap "" TERM; echo ready; while :; do sleep 1; done`))
			h.waitForOutput("stop-b", "ready")
			grace := 200 * time.Millisecond
			stopAt := time.Now()
			if err := h.r.Stop("stop-b", grace); err != nil {
				t.Fatal(err)
			}
			res := h.wait("stop-b")
			if !res.Stopped || res.Signal != "SIGKILL" || res.ExitCode != 137 {
				t.Errorf("got %+v, want Stopped by SIGKILL (137)", res)
			}
			if res.FinishedAt.Sub(stopAt) < grace {
				t.Errorf("killed %v after Stop, before the %v grace was over", res.FinishedAt.Sub(stopAt), grace)
			}
		})
		t.Run("a second Stop can shorten the grace", func(t *testing.T) {
			h.start(shell("stop-c", `trap "" TERM; echo ready; while :; do sleep 1; done`))
			h.waitForOutput("stop-c", "ready")
			if err := h.r.Stop("stop-c", time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := h.r.Stop("stop-c", 50*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if res := h.wait("stop-c"); !res.Stopped || res.Signal != "SIGKILL" {
				t.Errorf("got %+v, want Stopped by SIGKILL well before the first hour of grace", res)
			}
		})
		t.Run("unknown task", func(t *testing.T) {
			if err := h.r.Stop("nope", 0); !errors.Is(err, ErrUnknownTask) {
				t.Errorf("err = %v, want ErrUnknownTask", err)
			}
		})
	})
}

func TestWalltime(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		tests := []struct {
			name       string
			script     string
			walltime   time.Duration
			grace      time.Duration
			wantSignal string
			wantCode   int
		}{
			{"SIGTERM at the limit", "exec sleep 60", 300 * time.Millisecond, 10 * time.Second, "SIGTERM", 143},
			// The trap is set within microseconds of the start; a one second
			// limit leaves it ample time.
			{"SIGKILL after grace", `trap "" TERM; while :; do sleep 1; done`, time.Second, 300 * time.Millisecond, "SIGKILL", 137},
		}
		for i, tt := range tests {
			spec := shell("wall-"+string(rune('a'+i)), tt.script)
			spec.Walltime, spec.KillGrace = tt.walltime, tt.grace
			res := h.run(spec)
			if !res.TimedOut || res.Stopped || res.Signal != tt.wantSignal || res.ExitCode != tt.wantCode {
				t.Errorf("%s: got %+v, want TimedOut with %s (%d)", tt.name, res, tt.wantSignal, tt.wantCode)
			}
			ran := res.FinishedAt.Sub(res.StartedAt)
			if min := tt.walltime; tt.wantSignal == "SIGKILL" && ran < min+tt.grace || ran < min {
				t.Errorf("%s: killed after %v, before walltime (+grace for SIGKILL) was over", tt.name, ran)
			}
		}
	})
}

func TestLeftoverProcessesAreKilled(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, true)
		// The task starts a daemon in its own session (out of the task's process
		// group) and exits; the daemon must not outlive the task.
		res := h.run(shell("daemon", `setsid sleep 300 >/dev/null 2>&1 & echo $!`))
		if res.ExitCode != 0 {
			t.Fatalf("exit %d", res.ExitCode)
		}
		pid := strings.TrimSpace(h.readLog("daemon", "stdout"))
		if cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && strings.Contains(string(cmdline), "sleep") {
			t.Errorf("daemon %s (%q) survived its task", pid, cmdline)
		}
		for _, d := range h.r.cg.forTask("daemon").dirs() {
			if exists(d) {
				t.Errorf("task cgroup %s still exists", d)
			}
		}
	})
}

func TestSlowEventReaderDoesNotBlock(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		const n = 20
		for i := range n {
			h.start(shell("many-"+string(rune('a'+i)), "true"))
		}
		// Nobody reads Events while they all end; their status files appear
		// regardless, and then all events are there.
		deadline := time.Now().Add(time.Minute)
		for i := range n {
			for {
				if _, ok := h.r.Finished("many-" + string(rune('a'+i))); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("task %d never finished while events were unread", i)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		for i := range n {
			h.wait("many-" + string(rune('a'+i)))
		}
	})
}

func TestCloseLeavesTasksRunning(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, false)
		h.start(shell("after-close", "exec sleep 60"))
		pid := supervisorPID(h.r, "after-close")
		if err := h.r.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok := <-h.r.Events(); ok {
			t.Error("Events still open after Close")
		}
		if pid <= 0 || syscall.Kill(pid, 0) != nil {
			t.Fatalf("Close stopped the task's supervisor (%d)", pid)
		}
		if _, ok := h.r.Finished("after-close"); ok {
			t.Fatal("Close ended the task")
		}
		if _, err := h.r.Start(shell("late", "true")); !errors.Is(err, ErrClosed) {
			t.Errorf("Start after Close: err = %v, want ErrClosed", err)
		}
		// A new runner adopts and stops it (the harness's cleanup only knows
		// the closed runner).
		r2 := newHarnessWith(t, mustRunner(t, sup, h.r.dir, h.r.cg))
		got, err := r2.r.Recover()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]RecoveredTask{{ID: "after-close", Running: true}}, got); diff != "" {
			t.Fatalf("Recover (-want +got):\n%s", diff)
		}
		r2.ids = []string{"after-close"}
		if err := r2.r.Stop("after-close", 0); err != nil {
			t.Fatal(err)
		}
		if res := r2.wait("after-close"); !res.Stopped {
			t.Errorf("got %+v, want Stopped", res)
		}
		if sup == SupervisorTask {
			// The closed runner no longer reaps its child; the test does.
			// (The daemon lives on: r2's cleanup shuts it down and reaps it.)
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
				t.Errorf("reaping the supervisor: %v", err)
			}
		}
	})
}

// mustRunner makes a runner on dir using the same cgroup parent as p.
func mustRunner(t *testing.T, sup, dir string, p cgroupParent) *Runner {
	t.Helper()
	r, err := NewRunner(Config{Dir: dir, SupervisorCommand: supervisorCommand(t), Cgroups: cgroupOff, Supervisor: sup})
	if err != nil {
		t.Fatal(err)
	}
	r.cg = p
	return r
}

// The start time a taskRun reads off the clock around its fork is the one
// /proc/<pid>/stat gives: adoption after a daemon restart (journal.go)
// compares the two to tell a task's leader from a process that reuses its pid.
func TestTaskStartTimeFromTheClockMatchesProc(t *testing.T) {
	dir := t.TempDir()
	matched := 0
	for i := 0; i < 50 && matched < 5; i++ {
		tr := &taskRun{dir: dir, spec: TaskSpec{ID: "clock", Command: []string{"sleep", "1"}, Env: []string{"PATH=/usr/bin:/bin"}},
			cg: cgroupSpec{Driver: cgroupOff}, log: testLogger(t)}
		if err := tr.start([3]int{0, 1, 2}, v1Home{}); err != nil || tr.pid <= 0 {
			t.Fatalf("start: pid %d, %v, %+v", tr.pid, err, tr.result)
		}
		fromProc, err := pidStartTime(tr.pid)
		_ = syscall.Kill(-tr.pid, syscall.SIGKILL)
		_ = tr.watch.reap()
		_ = tr.watch.close()
		if err != nil {
			t.Fatal(err)
		}
		if !tr.startKnown {
			continue // the fork straddled a tick: the daemon reads /proc then
		}
		if tr.startTicks != fromProc {
			t.Fatalf("start time from the clock %d, /proc/%d/stat says %d", tr.startTicks, tr.pid, fromProc)
		}
		matched++
	}
	if matched == 0 {
		t.Fatal("no fork fell within one clock tick")
	}
}
