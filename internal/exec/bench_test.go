package exec

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkStartTrue measures the per-task launch cost: Start of `true`
// through a supervisor (here the test binary) until its TaskEvent, then
// Remove. It is the floor for how many trivial tasks a node can run per
// second, one at a time. DURE_BENCH_SUPERVISOR="/path/to/dure supervise"
// measures the real binary as the supervisor (its package initialisation is
// part of the cost) instead of this test binary.
func BenchmarkStartTrue(b *testing.B) {
	sup := supervisorCommand(b)
	if s := os.Getenv("DURE_BENCH_SUPERVISOR"); s != "" {
		sup = strings.Fields(s)
	}
	for _, mode := range []string{cgroupAuto, cgroupOff} {
		b.Run("cgroups="+mode, func(b *testing.B) {
			r, err := NewRunner(Config{Dir: b.TempDir(), SupervisorCommand: sup, Cgroups: mode, CgroupParent: cgroupParentName()})
			if err != nil {
				b.Skipf("cgroups %s unavailable: %v", mode, err)
			}
			b.Cleanup(func() {
				r.Close()
				removeCgroupParent(b, r.cg)
			})
			b.Logf("cgroup driver %s", r.CgroupDriver())
			starts := make([]time.Duration, 0, b.N)
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
			// Start's latency (until the task's process exists) is what a
			// submitter waits for; report its median beside the full cycle.
			slices.Sort(starts)
			b.ReportMetric(float64(starts[len(starts)/2].Nanoseconds()), "start-p50-ns")
		})
	}
}

// BenchmarkForkExecTrue is the floor BenchmarkStartTrue is compared with:
// fork/exec and wait of `true` with no supervisor, cgroup or files.
func BenchmarkForkExecTrue(b *testing.B) {
	path, err := lookPath("true", []string{"PATH=/usr/bin:/bin"}, "/")
	if err != nil {
		b.Skip(err)
	}
	for range b.N {
		p, err := os.StartProcess(path, []string{"true"}, &os.ProcAttr{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}
