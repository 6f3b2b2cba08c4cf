package exec

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStartTrue measures the per-task launch cost: Start of `true`
// through the supervisor (here the test binary) until its TaskEvent, then
// Remove, in each supervisor mode. It is the floor for how many trivial
// tasks a node can run per second, one at a time. cpu-ns/op is the CPU
// time per task of the runner, the supervisors (daemon) and the tasks
// together, user and system. DURE_BENCH_SUPERVISOR="/path/to/dure
// supervise" measures the real binary as the supervisor (its package
// initialisation is part of the per-task cost in task mode) instead of this
// test binary.
func BenchmarkStartTrue(b *testing.B) {
	sup := supervisorCommand(b)
	if s := os.Getenv("DURE_BENCH_SUPERVISOR"); s != "" {
		sup = strings.Fields(s)
	}
	for _, smode := range modes {
		for _, mode := range []string{cgroupAuto, cgroupOff} {
			b.Run("supervisor="+smode+"/cgroups="+mode, func(b *testing.B) { benchStartTrue(b, sup, smode, mode) })
		}
	}
}

func benchStartTrue(b *testing.B, sup []string, smode, mode string) {
	dir := b.TempDir()
	if base := os.Getenv("DURE_BENCH_DIR"); base != "" {
		// e.g. /dev/shm: the task directories on tmpfs, without the file
		// system's inode allocation cost (see docs/exec.md).
		var err error
		if dir, err = os.MkdirTemp(base, "bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	r, err := NewRunner(Config{Dir: dir, SupervisorCommand: sup, Cgroups: mode, CgroupParent: cgroupParentName(), Supervisor: smode})
	if err != nil {
		b.Skipf("cgroups %s unavailable: %v", mode, err)
	}
	b.Cleanup(func() {
		if err := r.Shutdown(true); err != nil {
			b.Error(err)
		}
		removeCgroupParent(b, r.cg)
	})
	b.Logf("cgroup driver %s", r.CgroupDriver())
	starts := make([]time.Duration, 0, b.N)
	cpu0, daemon0 := ourCPU(b, dir), daemonCPU(dir)
	b.ResetTimer()
	for i := range b.N {
		id := "t" + strconv.Itoa(i)
		t0 := time.Now()
		_, err := r.Start(TaskSpec{ID: id, Command: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}, MilliCPU: 1000, MemoryBytes: 1 << 30})
		starts = append(starts, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		ev := <-r.Events()
		if ev.ID != id || ev.Result.ExitCode != 0 {
			b.Fatalf("event %+v", ev)
		}
		if err := r.Remove(id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((ourCPU(b, dir)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	if smode == SupervisorNode {
		// The node daemon's own share, without its tasks: what it costs
		// to supervise a task, beside the task's own fork/exec.
		b.ReportMetric(float64((daemonCPU(dir)-daemon0).Nanoseconds())/float64(b.N), "daemon-cpu-ns/op")
	}
	// Start's latency (until the task's process exists) is what a
	// submitter waits for; report its median beside the full cycle.
	slices.Sort(starts)
	b.ReportMetric(float64(starts[len(starts)/2].Nanoseconds()), "start-p50-ns")
}

// ourCPU is the CPU time used so far by this process, its reaped children
// (task-mode supervisors and, through them, their tasks) and the node
// daemon of dir with its reaped children (node-mode tasks).
func ourCPU(b *testing.B, dir string) time.Duration {
	var self, children syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err != nil {
		b.Fatal(err)
	}
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	total := tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
	if pid := daemonPID(dir); dir != "" && pid > 0 {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err == nil {
			i := bytes.LastIndexByte(data, ')')
			f := strings.Fields(string(data[i+1:]))
			const hz = 100                            // USER_HZ
			for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime (fields 14-17)
				n, _ := strconv.ParseInt(f[k], 10, 64)
				total += time.Duration(n) * time.Second / hz
			}
		}
	}
	return total
}

// daemonCPU is the CPU time used so far by the node daemon of dir itself
// (all its threads, user and system), not counting its tasks; 0 if there is
// none.
func daemonCPU(dir string) time.Duration {
	pid := daemonPID(dir)
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	const hz = 100 // USER_HZ
	var total time.Duration
	for _, k := range []int{11, 12} { // utime stime (fields 14-15)
		n, _ := strconv.ParseInt(f[k], 10, 64)
		total += time.Duration(n) * time.Second / hz
	}
	return total
}

// BenchmarkForkExecTrue is the floor BenchmarkStartTrue is compared with:
// fork/exec and wait of `true` with no supervisor, cgroup or files.
func BenchmarkForkExecTrue(b *testing.B) {
	path, err := lookPath("true", []string{"PATH=/usr/bin:/bin"}, "/")
	if err != nil {
		b.Skip(err)
	}
	cpu0 := ourCPU(b, "")
	for range b.N {
		p, err := os.StartProcess(path, []string{"true"}, &os.ProcAttr{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((ourCPU(b, "")-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
