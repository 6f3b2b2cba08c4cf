package exec

import (
	"strconv"
	"testing"
)

// BenchmarkStartTrue measures the per-task launch cost: Start of `true`
// through a supervisor (here the test binary) until its TaskEvent, then
// Remove. It is the floor for how many trivial tasks a node can run per
// second, one at a time.
func BenchmarkStartTrue(b *testing.B) {
	for _, mode := range []string{cgroupAuto, cgroupOff} {
		b.Run("cgroups="+mode, func(b *testing.B) {
			r, err := NewRunner(Config{Dir: b.TempDir(), SupervisorCommand: supervisorCommand(b), Cgroups: mode, CgroupParent: cgroupParentName()})
			if err != nil {
				b.Skipf("cgroups %s unavailable: %v", mode, err)
			}
			b.Cleanup(func() {
				r.Close()
				removeCgroupParent(b, r.cg)
			})
			b.Logf("cgroup driver %s", r.CgroupDriver())
			b.ResetTimer()
			for i := range b.N {
				id := "t" + strconv.Itoa(i)
				if _, err := r.Start(TaskSpec{ID: id, Command: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}, MilliCPU: 1000, MemoryBytes: 1 << 30}); err != nil {
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
		})
	}
}
