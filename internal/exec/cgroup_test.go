package exec

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readCgroupFile reads one control file of a running task's cgroup.
func readCgroupFile(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func TestLimitsAreWrittenToTheTaskCgroup(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, true)
		const mem = 64 << 20
		tests := []struct {
			name      string
			milliCPU  int64
			wantQuota int64
		}{
			{"half a core", 500, 50000},
			{"two cores", 2000, 200000},
			{"below the kernel minimum is clamped", 1, 1000},
		}
		for i, tt := range tests {
			id := "limits-" + string(rune('a'+i))
			spec := shell(id, "cat /proc/self/cgroup; echo ready; exec sleep 60")
			spec.MilliCPU, spec.MemoryBytes = tt.milliCPU, mem
			h.start(spec)
			h.waitForOutput(id, "ready")
			cg := h.r.cg.forTask(id)
			switch cg.Driver {
			case cgroupV1:
				got := map[string]string{
					"cpu.cfs_quota_us":            readCgroupFile(t, cg.CPUDir, "cpu.cfs_quota_us"),
					"cpu.cfs_period_us":           readCgroupFile(t, cg.CPUDir, "cpu.cfs_period_us"),
					"memory.limit_in_bytes":       readCgroupFile(t, cg.MemoryDir, "memory.limit_in_bytes"),
					"memory.memsw.limit_in_bytes": readCgroupFile(t, cg.MemoryDir, "memory.memsw.limit_in_bytes"),
				}
				want := map[string]string{
					"cpu.cfs_quota_us":            strconv.FormatInt(tt.wantQuota, 10),
					"cpu.cfs_period_us":           "100000",
					"memory.limit_in_bytes":       strconv.Itoa(mem),
					"memory.memsw.limit_in_bytes": strconv.Itoa(mem),
				}
				if _, err := os.Stat(filepath.Join(cg.MemoryDir, "memory.memsw.limit_in_bytes")); err != nil {
					delete(want, "memory.memsw.limit_in_bytes") // no swap accounting on this kernel
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s: cgroup files (-want +got):\n%s", tt.name, diff)
				}
				// The task itself sees that it lives in these cgroups.
				out := h.readLog(id, "stdout")
				for _, c := range []struct{ ctl, dir string }{{"cpu", cg.CPUDir}, {"memory", cg.MemoryDir}} {
					if want := strings.TrimPrefix(c.dir, mustMount(t, c.ctl)); !strings.Contains(out, ":"+want+"\n") {
						t.Errorf("%s: task's /proc/self/cgroup does not show %s cgroup %s:\n%s", tt.name, c.ctl, want, out)
					}
				}
			case cgroupV2:
				if got, want := readCgroupFile(t, cg.Dir, "cpu.max"), strconv.FormatInt(tt.wantQuota, 10)+" 100000"; got != want {
					t.Errorf("%s: cpu.max = %q, want %q", tt.name, got, want)
				}
				if got := readCgroupFile(t, cg.Dir, "memory.max"); got != strconv.Itoa(mem) {
					t.Errorf("%s: memory.max = %q, want %d", tt.name, got, mem)
				}
			}
			// The supervisor is not in the task's cgroup: it must not be charged
			// for or killed with the task.
			pid, _ := readPid(filepath.Join(h.r.dir, id))
			procs, err := cgroupPIDs(cg)
			if err != nil {
				t.Fatal(err)
			}
			if len(procs) != 1 || procs[0] == pid {
				t.Errorf("%s: task cgroup holds %v, want just the task (supervisor is %d)", tt.name, procs, pid)
			}
			if err := h.r.Stop(id, 0); err != nil {
				t.Fatal(err)
			}
			h.wait(id)
			for _, d := range cg.dirs() {
				if exists(d) {
					t.Errorf("%s: cgroup %s not removed after the task ended", tt.name, d)
				}
			}
		}
	})
}

func mustMount(t *testing.T, controller string) string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := v1MountFor(parseMountinfo(data), controller)
	if !ok {
		t.Fatalf("no %s hierarchy", controller)
	}
	return p
}

func TestMemoryLimitOOMKills(t *testing.T) {
	eachMode(t, func(t *testing.T, sup string) {
		h := newHarness(t, sup, cgroupAuto, true)
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		const limit = 32 << 20
		tests := []struct {
			name    string
			mib     string
			wantOOM bool
		}{
			{"within the limit", "4", false},
			{"over the limit", "200", true},
		}
		for i, tt := range tests {
			id := "oom-" + string(rune('a'+i))
			spec := TaskSpec{ID: id, Command: []string{exe, "__alloc", tt.mib}, MemoryBytes: limit}
			res := h.run(spec)
			if res.OOMKilled != tt.wantOOM {
				t.Errorf("%s: OOMKilled = %v, want %v (result %+v, stdout %q)", tt.name, res.OOMKilled, tt.wantOOM, res, h.readLog(id, "stdout"))
			}
			if tt.wantOOM && (res.Signal != "SIGKILL" || res.ExitCode != 137) {
				t.Errorf("%s: got exit %d signal %q, want 137 SIGKILL", tt.name, res.ExitCode, res.Signal)
			}
			if !tt.wantOOM && res.ExitCode != 0 {
				t.Errorf("%s: exit %d, stderr %q", tt.name, res.ExitCode, h.readLog(id, "stderr"))
			}
		}
	})
}

// A per-task supervisor killed by hand: its runner kills the task and
// records ExitCode -1. (A killed node daemon is replaced and keeps watching
// its tasks: TestDaemonKilledTasksAreAdopted.)
func TestLostSupervisorIsRecorded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, SupervisorTask, cgroupAuto, true)
	h.start(shell("orphan", "echo $$; exec sleep 300"))
	h.waitForOutput("orphan", "\n")
	taskPid := strings.TrimSpace(h.readLog("orphan", "stdout"))
	supPid, ok := readPid(filepath.Join(h.r.dir, "orphan"))
	if !ok {
		t.Fatal("no pid file")
	}
	// Someone SIGKILLs the supervisor: the runner notices, kills the task
	// through its cgroup and records that the result is unknown.
	if err := syscall.Kill(supPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res := h.wait("orphan")
	if res.ExitCode != -1 || res.Lost == "" {
		t.Errorf("got %+v, want ExitCode -1 (unknown) and why in Lost", res)
	}
	if cmdline, err := os.ReadFile("/proc/" + taskPid + "/cmdline"); err == nil && strings.Contains(string(cmdline), "sleep") {
		t.Errorf("task %s survived its lost supervisor", taskPid)
	}
	if got, ok := h.r.Finished("orphan"); !ok || got.ExitCode != -1 {
		t.Errorf("Finished = %+v, %v; want the recorded ExitCode -1", got, ok)
	}
	for _, d := range h.r.cg.forTask("orphan").dirs() {
		if exists(d) {
			t.Errorf("cgroup %s left behind", d)
		}
	}
}

// The machine's cgroup v2 mount (/sys/fs/cgroup/unified here) has no cpu or
// memory controller, so the v2 driver is exercised there for everything but
// the limits: clone into the cgroup, killing leftovers with cgroup.kill,
// removal, and the setup failure when a limit cannot be written.
//
// These tests do not run in parallel with each other: they change the
// mount's root subtree_control and put it back.
func unifiedRunner(t *testing.T, sup string) (*Runner, []string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	root, ok := v2Mount(parseMountinfo(data))
	if !ok {
		t.Skip("no cgroup2 mount on this machine")
	}
	// Delegate whatever controller the mount has (hugetlb here) so the
	// subtree_control path is exercised too; put the root back afterwards.
	var controllers []string
	if data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil && len(strings.Fields(string(data))) > 0 {
		controllers = strings.Fields(string(data))[:1]
		before, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
		if !strings.Contains(string(before), controllers[0]) {
			t.Cleanup(func() { _ = writeFile(filepath.Join(root, "cgroup.subtree_control"), "-"+controllers[0]) })
		}
	}
	p, err := prepareV2(root, cgroupParentName(), controllers)
	if err != nil {
		t.Skipf("cgroup2 mount at %s not writable: %v", root, err)
	}

	r, err := NewRunner(Config{Dir: t.TempDir(), SupervisorCommand: supervisorCommand(t), Cgroups: cgroupOff, Supervisor: sup})
	if err != nil {
		t.Fatal(err)
	}
	r.cg = p
	return r, controllers
}

func TestV2DriverOnUnifiedMount(t *testing.T) {
	for _, sup := range modes { // one at a time: see unifiedRunner
		t.Run(sup, func(t *testing.T) {
			r, delegated := unifiedRunner(t, sup)
			h := newHarnessWith(t, r)
			cg := h.r.cg.forTask("v2")
			h.start(shell("v2", `setsid sleep 300 >/dev/null 2>&1 & echo $!; cat /proc/self/cgroup; echo ready; exec sleep 60`))
			h.waitForOutput("v2", "ready")
			out := lines(h.readLog("v2", "stdout"))
			daemon := out[0]
			rel := strings.TrimPrefix(cg.Dir, filepath.Dir(filepath.Dir(cg.Dir)))
			if !strings.Contains(strings.Join(out, "\n"), "0::"+rel) {
				t.Errorf("task is not in its v2 cgroup %s; /proc/self/cgroup:\n%s", rel, strings.Join(out, "\n"))
			}
			if got := readCgroupFile(t, cg.Dir, "cgroup.controllers"); len(delegated) > 0 && !strings.Contains(got, delegated[0]) {
				t.Errorf("task cgroup controllers = %q, want the delegated %v", got, delegated)
			}
			procs, err := cgroupPIDs(cg)
			if err != nil {
				t.Fatal(err)
			}
			if len(procs) != 2 {
				t.Errorf("cgroup.procs = %v, want the task and its daemon", procs)
			}
			if err := h.r.Stop("v2", 0); err != nil {
				t.Fatal(err)
			}
			if res := h.wait("v2"); !res.Stopped || res.Signal != "SIGTERM" {
				t.Errorf("got %+v, want Stopped by SIGTERM", res)
			}
			if cmdline, err := os.ReadFile("/proc/" + daemon + "/cmdline"); err == nil && strings.Contains(string(cmdline), "sleep") {
				t.Errorf("daemon %s survived its task", daemon)
			}
			if exists(cg.Dir) {
				t.Errorf("cgroup %s not removed", cg.Dir)
			}
		})
	}
}

// A command that cannot be executed is a start error under v2 as under v1,
// and the supervisor lives on. v2 forks through clone3 into the cgroup; a
// shadowed error there once made such a task "start" with pid 0, and the
// first signal to it (kill(-0)) killed the supervisor's own process group.
func TestV2CommandThatCannotStart(t *testing.T) {
	for _, sup := range modes { // one at a time: see unifiedRunner
		t.Run(sup, func(t *testing.T) {
			r, _ := unifiedRunner(t, sup)
			h := newHarnessWith(t, r)
			notExec := filepath.Join(t.TempDir(), "script")
			if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, tt := range []struct {
				spec     TaskSpec
				wantCode int
				wantErr  string
			}{
				{TaskSpec{ID: "v2-missing", Command: []string{"/no/such/program"}}, 127, "no such file"},
				{TaskSpec{ID: "v2-notexec", Command: []string{notExec}}, 126, "permission denied"},
			} {
				h.start(tt.spec)
				res := h.wait(tt.spec.ID)
				if res.ExitCode != tt.wantCode || !strings.Contains(res.StartErr, tt.wantErr) || res.Lost != "" {
					t.Errorf("%s: got exit %d StartErr %q Lost %q, want %d and an error containing %q", tt.spec.ID, res.ExitCode, res.StartErr, res.Lost, tt.wantCode, tt.wantErr)
				}
				if exists(h.r.cg.forTask(tt.spec.ID).Dir) {
					t.Errorf("%s: cgroup left behind", tt.spec.ID)
				}
			}
			// The same runner (and supervisor) still runs tasks.
			if res := h.run(shell("v2-after", "exit 3")); res.ExitCode != 3 || res.Lost != "" {
				t.Errorf("a task after the failed starts: %+v, want exit 3", res)
			}
		})
	}
}

func TestV2SetupFailureIsAStartError(t *testing.T) {
	for _, sup := range modes { // one at a time: see unifiedRunner
		t.Run(sup, func(t *testing.T) {
			r, _ := unifiedRunner(t, sup)
			h := newHarnessWith(t, r)
			// No memory controller on this mount: memory.max cannot be written, so
			// the task must not start (running it unlimited would be wrong).
			spec := shell("nomem", "true")
			spec.MemoryBytes = 64 << 20
			_, err := h.r.Start(spec)
			if err == nil || !strings.Contains(err.Error(), "memory.max") {
				t.Fatalf("Start = %v, want an error about memory.max", err)
			}
			if res, ok := h.r.Finished("nomem"); !ok || !strings.Contains(res.StartErr, "memory.max") {
				t.Errorf("status file: %+v, %v; want StartErr about memory.max", res, ok)
			}
			if exists(h.r.cg.forTask("nomem").Dir) {
				t.Error("cgroup left behind after a failed setup")
			}
			if _, err := h.r.Start(spec); !errors.Is(err, ErrAlreadyStarted) {
				t.Errorf("Start again: %v, want ErrAlreadyStarted (at most once)", err)
			}
			select {
			case ev := <-h.r.Events():
				t.Errorf("a failed Start sent an event: %+v", ev)
			default:
			}
		})
	}
}

func TestV2RequiresControllers(t *testing.T) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	root, ok := v2Mount(parseMountinfo(data))
	if !ok {
		t.Skip("no cgroup2 mount")
	}
	missing := missingControllers(root, v2Controllers)
	if len(missing) == 0 {
		t.Skipf("the cgroup2 mount at %s has cpu and memory; nothing to refuse", root)
	}
	_, err = NewRunner(Config{Dir: t.TempDir(), SupervisorCommand: supervisorCommand(t), Cgroups: "v2", CgroupParent: cgroupParentName()})
	if err == nil || !strings.Contains(err.Error(), "lacks the "+strings.Join(missing, ", ")) {
		t.Errorf("NewRunner(v2) = %v, want an error naming the missing controllers %v", err, missing)
	}
}
