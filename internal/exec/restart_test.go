package exec

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// An agent that dies (SIGKILL) must not take its tasks with it: the
// supervisor keeps the task running, records its true exit code, and a new
// runner adopts it with Recover and reports its end.
func TestTaskSurvivesRunnerDeath(t *testing.T) {
	eachMode(t, testTaskSurvivesRunnerDeath)
}

func testTaskSurvivesRunnerDeath(t *testing.T, sup string) {
	dir := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	parent := cgroupParentName()
	mode := cgroupAuto
	if _, err := resolveCgroups(mode, parent); err != nil {
		mode = cgroupOff // still a valid test of survival, without cgroups
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(exe, "__runner", dir, parent, mode, sup, fifo)
	stdout, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "started ") {
		_ = agent.Process.Kill()
		_ = agent.Wait()
		t.Fatalf("runner process said %q, %v", line, err)
	}
	supervisor, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "started ")))

	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()

	taskDir := filepath.Join(dir, "survivor")
	if supervisor <= 0 || syscall.Kill(supervisor, 0) != nil {
		t.Fatalf("supervisor %d died with its runner", supervisor)
	}
	if _, ok, _ := readStatus(taskDir); ok {
		t.Fatal("task ended with its runner")
	}

	// The restarted agent.
	r, err := NewRunner(Config{Dir: dir, SupervisorCommand: supervisorCommand(t), Cgroups: mode, CgroupParent: parent, Supervisor: sup})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, r)
	got, err := r.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]RecoveredTask{{ID: "survivor", Running: true}}, got); diff != "" {
		t.Fatalf("Recover (-want +got):\n%s", diff)
	}
	h.ids = []string{"survivor"}

	// Let the task finish: it exits 7 once it reads a line from the fifo.
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("go\n")
	f.Close()

	res := h.wait("survivor")
	if res.ExitCode != 7 || res.StartedAt.IsZero() || res.Lost != "" {
		t.Errorf("got %+v, want exit code 7 with a start time", res)
	}
	if got, ok := r.Finished("survivor"); !ok || got.ExitCode != 7 {
		t.Errorf("status file: %+v, %v; want exit code 7", got, ok)
	}
	// A second Recover knows the task already.
	if again, err := r.Recover(); err != nil || len(again) != 0 {
		t.Errorf("second Recover = %v, %v; want nothing new", again, err)
	}
}

func TestRecoverListsEndedAndLostTasks(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupOff, false)
		h.run(shell("ended", "exit 4"))
		// A task directory whose supervisor vanished before recording a
		// result: per-task, a spec and a pid file naming a process that is
		// not a supervisor; node mode, logs the daemon knows nothing of.
		lost := filepath.Join(h.r.dir, "lost")
		if err := os.MkdirAll(lost, 0o755); err != nil {
			t.Fatal(err)
		}
		switch sup {
		case SupervisorTask:
			spec, _ := os.ReadFile(filepath.Join(h.r.dir, "ended", specFile))
			spec = []byte(strings.Replace(string(spec), `"ID":"ended"`, `"ID":"lost"`, 1))
			if err := os.WriteFile(filepath.Join(lost, specFile), spec, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(lost, pidFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
				t.Fatal(err)
			}
		case SupervisorNode:
			if err := os.WriteFile(filepath.Join(lost, stdoutFile), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Junk that is not a task directory is ignored.
		if err := os.Mkdir(filepath.Join(h.r.dir, "junk"), 0o755); err != nil {
			t.Fatal(err)
		}

		r2 := mustRunner(t, sup, h.r.dir, h.r.cg)
		defer r2.Close()
		got, err := r2.Recover()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].ID != "ended" || got[1].ID != "lost" {
			t.Fatalf("Recover = %+v, want ended and lost", got)
		}
		if got[0].Running || got[0].Result.ExitCode != 4 {
			t.Errorf("ended: %+v, want exit code 4", got[0])
		}
		if got[1].Running || got[1].Result.ExitCode != -1 || got[1].Result.Lost == "" {
			t.Errorf("lost: %+v, want ExitCode -1 and why in Lost", got[1])
		}
		if res, ok := r2.Finished("lost"); !ok || res.ExitCode != -1 {
			t.Errorf("lost task has no status file after Recover: %+v %v", res, ok)
		}
		if err := r2.Remove("lost"); err != nil {
			t.Errorf("Remove(lost): %v", err)
		}
	})
}
