package sim

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/sched"
)

func TestGenerateBenchIsSeededAndFollowsItsDistribution(t *testing.T) {
	spec := BenchSpec{Nodes: 2000, Jobs: 4000, Queues: 12, Racks: 10, Seed: 7}
	a, err := GenerateBench(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateBench(spec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("same seed, different workloads:\n%s", diff)
	}
	spec.Seed = 8
	c, _ := GenerateBench(spec)
	if cmp.Equal(a.Jobs, c.Jobs) {
		t.Errorf("seeds 7 and 8 gave the same jobs")
	}
	gpuNodes, racks := 0, map[string]bool{}
	for _, n := range a.Nodes {
		racks[n.Labels["rack"]] = true
		if n.Capacity.GPUs > 0 {
			gpuNodes++
		}
	}
	if len(racks) != 10 || gpuNodes < 300 || gpuNodes > 500 {
		t.Errorf("%d racks, %d GPU nodes of 2000; want 10 racks and about 20%% GPU nodes", len(racks), gpuNodes)
	}
	cohorts, leaves := 0, 0
	for _, q := range a.Queues {
		if q.Parent == "" {
			cohorts++
		} else {
			leaves++
		}
	}
	if cohorts != 3 || leaves != 12 {
		t.Errorf("%d cohorts, %d leaf queues; want 3 (12 queues in fives) and 12", cohorts, leaves)
	}
	gpuJobs := 0
	for _, j := range a.Jobs {
		if j.Groups[0].Resources.GPUs > 0 {
			gpuJobs++
		}
		if j.SubmitTime.After(a.Now) || j.Walltime < 5*time.Minute || j.Walltime > 24*time.Hour {
			t.Fatalf("job %d submitted %v, walltime %s: want before Now, 5m–24h", j.ID, j.SubmitTime, j.Walltime)
		}
	}
	if gpuJobs < 800 || gpuJobs > 1200 {
		t.Errorf("%d GPU jobs of 4000, want about 25%%", gpuJobs)
	}
}

func TestRunBenchPlacesWorkAndKeepsCount(t *testing.T) {
	w, err := GenerateBench(BenchSpec{Nodes: 200, Jobs: 2000, Queues: 5, Racks: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return time.Unix(0, 0) } // timings are not what this test checks
	res, err := RunBench(w, sched.Config{Policy: sched.PolicyEASY}, 3, 1, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Passes != 3 || len(res.PassTimes) != 3 || res.PlacedFirst == 0 || res.Placements < res.PlacedFirst {
		t.Errorf("result %+v: want 3 passes, placements in the first and at least as many overall", res)
	}
	if res.Pending == 0 || res.Pending >= 2000 {
		t.Errorf("%d jobs pending after 3 passes; want some placed and, 2000 jobs on 200 nodes, some left", res.Pending)
	}
}

// BenchmarkSchedulePass times one cold scheduling pass over a generated
// cluster and queue (dure bench sched does the same with more passes).
func BenchmarkSchedulePass(b *testing.B) {
	for _, size := range []struct{ nodes, jobs int }{{1000, 10000}, {10000, 100000}} {
		for _, p := range []sched.Policy{sched.PolicyEASY, sched.PolicyDure} {
			b.Run(fmt.Sprintf("%s/%dnodes-%djobs", p, size.nodes, size.jobs), func(b *testing.B) {
				w, err := GenerateBench(BenchSpec{Nodes: size.nodes, Jobs: size.jobs, Queues: 50, Racks: 50, Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				snap := &sched.Snapshot{Nodes: w.Nodes, Pending: w.Jobs, Queues: w.Queues}
				placed := 0
				b.ReportAllocs()
				for b.Loop() {
					placed = len(sched.Schedule(snap, w.Now, sched.Config{Policy: p}).Placements)
				}
				b.ReportMetric(float64(placed)*float64(b.N)/b.Elapsed().Seconds(), "cpu-placements/s")
			})
		}
	}
}

// BenchmarkBenchSched is dure bench sched's default load (10,000 nodes,
// 100,000 jobs, 50 queues, 5 passes: a cold one, then four after churn),
// for profiling the scheduler the way the command runs it.
func BenchmarkBenchSched(b *testing.B) {
	w, err := GenerateBench(BenchSpec{Nodes: 10000, Jobs: 100000, Queues: 50, Racks: 50, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	// Passes are timed in process CPU time too: steadier than wall time on
	// a shared machine.
	cpuClock := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var res *BenchResult
	for b.Loop() {
		res, err = RunBench(w, sched.Config{}, 5, 1, time.Now, cpuClock)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.PlacementsPerSecond(), "placements/s")
	b.ReportMetric(res.PlacementsPerCPUSecond(), "cpu-placements/s")
	b.ReportMetric(float64(res.CPUTotal().Microseconds())/1e3/float64(res.Passes), "cpu-ms/pass")
	b.ReportMetric(float64(res.CPU[0].Microseconds())/1e3, "first-cpu-ms")
}
