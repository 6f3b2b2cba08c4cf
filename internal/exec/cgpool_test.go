package exec

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// v1NodeHarness is a node-mode runner on cgroup v1, or a skip.
func v1NodeHarness(t *testing.T) *harness {
	t.Helper()
	parent := cgroupParentName()
	p, err := resolveCgroups(cgroupV1, parent)
	if err != nil {
		t.Skipf("no writable cgroup v1 here: %v", err)
	}
	_ = syscall.Rmdir(p.cpuDir)
	_ = syscall.Rmdir(p.memoryDir)
	return nodeRunner(t, t.TempDir(), cgroupV1, parent)
}

// spareNames lists the spare cgroups in a v1 parent.
func spareNames(t *testing.T, parent string) []string {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), spareName) {
			out = append(out, e.Name())
		}
	}
	return out
}

// The node daemon keeps an ended task's cgroups as a spare and renames it
// into place for the next task, with that task's limits: lower, higher and
// none, in both controllers (memory+swap follows memory either way).
func TestReusedCgroupGetsTheNewTasksLimits(t *testing.T) {
	t.Parallel()
	h := v1NodeHarness(t)
	if res := h.run(shell("first", "exit 0")); res.ExitCode != 0 {
		t.Fatalf("first: %+v", res)
	}
	spares := spareNames(t, h.r.cg.cpuDir)
	if len(spares) != 1 || !slicesEqual(spareNames(t, h.r.cg.memoryDir), spares) {
		t.Fatalf("after one task: spares %v (cpu) %v (memory), want one in both", spares, spareNames(t, h.r.cg.memoryDir))
	}
	const unlimited = "9223372036854771712" // v1's "no limit", page-aligned
	tests := []struct {
		name      string
		milliCPU  int64
		mem       int64
		wantQuota string
		wantMem   string
	}{
		{"limits on a spare that had none", 500, 64 << 20, "50000", strconv.Itoa(64 << 20)},
		{"higher limits", 2000, 256 << 20, "200000", strconv.Itoa(256 << 20)},
		{"lower memory", 2000, 32 << 20, "200000", strconv.Itoa(32 << 20)},
		{"no limits again", 0, 0, "-1", unlimited},
	}
	for i, tt := range tests {
		id := "reuse-" + strconv.Itoa(i)
		spec := shell(id, "echo ready; exec sleep 60")
		spec.MilliCPU, spec.MemoryBytes = tt.milliCPU, tt.mem
		h.start(spec)
		h.waitForOutput(id, "ready")
		if got := spareNames(t, h.r.cg.cpuDir); len(got) != 0 {
			t.Errorf("%s: spares %v while the task runs; want its cgroup to be the spare", tt.name, got)
		}
		cg := h.r.cg.forTask(id)
		got := map[string]string{
			"cpu.cfs_quota_us":            readCgroupFile(t, cg.CPUDir, "cpu.cfs_quota_us"),
			"cpu.cfs_period_us":           readCgroupFile(t, cg.CPUDir, "cpu.cfs_period_us"),
			"memory.limit_in_bytes":       readCgroupFile(t, cg.MemoryDir, "memory.limit_in_bytes"),
			"memory.memsw.limit_in_bytes": readCgroupFile(t, cg.MemoryDir, "memory.memsw.limit_in_bytes"),
		}
		want := map[string]string{
			"cpu.cfs_quota_us":            tt.wantQuota,
			"cpu.cfs_period_us":           "100000",
			"memory.limit_in_bytes":       tt.wantMem,
			"memory.memsw.limit_in_bytes": tt.wantMem,
		}
		if _, err := os.Stat(filepath.Join(cg.MemoryDir, "memory.memsw.limit_in_bytes")); err != nil {
			delete(want, "memory.memsw.limit_in_bytes")
			delete(got, "memory.memsw.limit_in_bytes")
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: cgroup files (-want +got):\n%s", tt.name, diff)
		}
		if err := h.r.Stop(id, 0); err != nil {
			t.Fatal(err)
		}
		h.wait(id)
		for _, d := range cg.dirs() {
			if exists(d) {
				t.Errorf("%s: cgroup %s still there after the task ended", tt.name, d)
			}
		}
	}
	// The harness's cleanup shuts the daemon down and fails the test if a
	// spare is left in the parent.
}

// A cgroup reused after an OOM kill does not report the next task OOM
// killed: its counter goes on, and the kill before the task got it is not
// the task's.
func TestReusedCgroupAfterOOMKill(t *testing.T) {
	t.Parallel()
	h := v1NodeHarness(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const limit = 32 << 20
	for i, tt := range []struct {
		mib     string
		wantOOM bool
	}{{"200", true}, {"4", false}, {"200", true}} {
		id := "oom-" + strconv.Itoa(i)
		res := h.run(TaskSpec{ID: id, Command: []string{exe, "__alloc", tt.mib}, MemoryBytes: limit})
		if res.OOMKilled != tt.wantOOM {
			t.Errorf("task %d allocating %s MiB: OOMKilled = %v, want %v (%+v)", i, tt.mib, res.OOMKilled, tt.wantOOM, res)
		}
		if n := len(spareNames(t, h.r.cg.memoryDir)); n != 1 {
			t.Errorf("after task %d: %d spares, want the one cgroup going round", i, n)
		}
	}
}

// Spares left by a daemon killed with SIGKILL are taken up by the next
// daemon of the same cgroup parent and removed when it exits.
func TestSparesOfAKilledDaemonAreTakenUp(t *testing.T) {
	t.Parallel()
	parent := cgroupParentName()
	if _, err := resolveCgroups(cgroupV1, parent); err != nil {
		t.Skipf("no writable cgroup v1 here: %v", err)
	}
	dir := t.TempDir()
	first := nodeRunner(t, dir, cgroupV1, parent)
	first.start(shell("keep", "exec sleep 300")) // keeps the daemon from exiting when first closes
	first.run(shell("a", "exit 0"))
	left := spareNames(t, first.r.cg.cpuDir)
	if len(left) != 1 {
		t.Fatalf("spares %v, want one", left)
	}
	if err := first.r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(daemonPID(dir), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the daemon is gone", func() bool { return !daemonAlive(dir) })

	second := nodeRunner(t, dir, cgroupV1, parent)
	second.ids = []string{"keep"} // adopted by the new daemon; stopped at cleanup
	spec := shell("b", "echo ready; exec sleep 60")
	spec.MilliCPU = 250
	second.start(spec)
	second.waitForOutput("b", "ready")
	if got := spareNames(t, second.r.cg.cpuDir); len(got) != 0 {
		t.Errorf("spares %v while b runs; want b in the old daemon's spare", got)
	}
	if got := readCgroupFile(t, second.r.cg.forTask("b").CPUDir, "cpu.cfs_quota_us"); got != "25000" {
		t.Errorf("b's quota %s, want 25000", got)
	}
	// second's cleanup stops b, shuts the daemon down and checks that no
	// cgroup is left.
}

func slicesEqual(a, b []string) bool { return cmp.Equal(a, b) }
