package exec

import (
	"os"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestZZTiming(t *testing.T) {
	r, err := NewRunner(Config{Dir: t.TempDir(), SupervisorCommand: supervisorCommand(t), Cgroups: os.Getenv("ZZMODE"), CgroupParent: cgroupParentName()})
	if err != nil {
		t.Fatal(err)
	}
	defer removeCgroupParent(t, r.cg)
	defer r.Close()
	variants := map[string][]string{"gomaxprocs1": supervisorEnv(os.Environ()), "default": os.Environ()}
	cpu := map[string]time.Duration{}
	lat := map[string][]time.Duration{}
	n := 100
	for i := 0; i < n; i++ {
		for name, env := range variants {
			r.supEnv = env
			id := name + strconv.Itoa(i)
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru0)
			t0 := time.Now()
			if _, err := r.Start(TaskSpec{ID: id, Command: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}, MilliCPU: 1000, MemoryBytes: 1 << 30}); err != nil {
				t.Fatal(err)
			}
			lat[name] = append(lat[name], time.Since(t0))
			<-r.Events()
			syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru1)
			cpu[name] += time.Duration((ru1.Utime.Nano() + ru1.Stime.Nano()) - (ru0.Utime.Nano() + ru0.Stime.Nano()))
			r.Remove(id)
		}
	}
	for name := range variants {
		l := lat[name]
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		t.Logf("%s: child cpu/task %v; start latency p50 %v p10 %v", name, cpu[name]/time.Duration(n), l[n/2], l[n/10])
	}
}
