package sched

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// benchCluster: 80% CPU nodes (32 cores, 128GiB), 20% GPU nodes (64 cores,
// 512GiB, 8 GPUs), in two racks.
func benchCluster(n int) []*model.Node {
	nodes := make([]*model.Node, 0, n)
	for i := 0; i < n; i++ {
		b := testkit.Node(fmt.Sprintf("node%05d", i)).Label("rack", fmt.Sprintf("r%d", i%2))
		if i%5 == 0 {
			b.CPU(64).Mem("512G").GPUs(8).Label("pool", "gpu")
		} else {
			b.CPU(32).Mem("128G").Label("pool", "cpu")
		}
		nodes = append(nodes, b.Build())
	}
	return nodes
}

// benchJobs: jobs drawn from a handful of common shapes, the way real queues
// look (many users submit the same few sizes). tasks(i) gives job i's task
// count; shapes > 0 makes every job's cpu request one of that many values.
func benchJobs(n int, tasks func(i int) int, shapes int) []*model.Job {
	common := []struct {
		cpu  int64
		mem  string
		gpus int
	}{{1000, "2G", 0}, {2000, "4G", 0}, {4000, "16G", 0}, {8000, "32G", 0}, {500, "1G", 0}, {8000, "64G", 1}, {16000, "128G", 4}}
	jobs := make([]*model.Job, 0, n)
	for i := 0; i < n; i++ {
		c := common[i%len(common)]
		b := testkit.Job(model.JobID(i + 1)).Priority(i % 3).Tasks(tasks(i)).MilliCPU(c.cpu).Mem(c.mem).GPUs(c.gpus)
		if shapes > 0 {
			b.MilliCPU(int64(100 + (i%shapes)*10))
		}
		if i%10 == 0 {
			b.Constraint("rack", "r1")
		}
		jobs = append(jobs, b.Build())
	}
	return jobs
}

func runScheduleBench(b *testing.B, snap *Snapshot) {
	b.Helper()
	b.ReportAllocs()
	var plan *Plan
	cpu0 := cpuTime()
	for b.Loop() {
		plan = Schedule(snap, testkit.Epoch, Config{})
	}
	cpu := cpuTime() - cpu0
	placed := len(plan.Placements)
	if placed == 0 {
		b.Fatal("nothing placed: the benchmark measures nothing")
	}
	perPass := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(placed), "placements/op")
	b.ReportMetric(perPass/float64(placed), "ns/placement")
	// CPU time is steadier than wall time on a shared machine.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(placed), "cpu-ns/placement")
	b.ReportMetric(float64(len(plan.Reasons)), "left-pending/op")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fragment fills the nodes with allocations of random sizes (seeded, so
// every run measures the same cluster): free capacity ends up scattered in
// odd amounts, the hard case for an index.
func fragment(nodes []*model.Node, seed uint64) []*model.Allocation {
	rng := rand.New(rand.NewPCG(seed, 0))
	var allocs []*model.Allocation
	for _, n := range nodes {
		cpu, mem := n.Capacity.MilliCPU, n.Capacity.MemoryBytes
		for k := 0; k < 4; k++ {
			c := rng.Int64N(cpu/2 + 1)
			m := rng.Int64N(mem/2 + 1)
			if c > cpu || m > mem {
				break
			}
			cpu, mem = cpu-c, mem-m
			allocs = append(allocs, testkit.Alloc(model.JobID(1_000_000+len(allocs)), 0, n.Name).
				Resources(model.Resources{MilliCPU: c, MemoryBytes: m}).Build())
		}
	}
	return allocs
}

// BenchmarkSchedule reports ns per placement for whole passes: ordering,
// placement, and reasons for the jobs left pending.
func BenchmarkSchedule(b *testing.B) {
	for _, nodes := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("nodes=%d/jobs=10000/single-task", nodes), func(b *testing.B) {
			runScheduleBench(b, &Snapshot{Nodes: benchCluster(nodes), Pending: benchJobs(10000, func(int) int { return 1 }, 0)})
		})
		b.Run(fmt.Sprintf("nodes=%d/jobs=2000/multi-task", nodes), func(b *testing.B) {
			// 1–16 tasks per job, 2,000 jobs: about 17,000 tasks.
			runScheduleBench(b, &Snapshot{Nodes: benchCluster(nodes), Pending: benchJobs(2000, func(i int) int { return 1 + (i*7)%16 }, 0)})
		})
		b.Run(fmt.Sprintf("nodes=%d/jobs=10000/single-task-500-shapes", nodes), func(b *testing.B) {
			runScheduleBench(b, &Snapshot{Nodes: benchCluster(nodes), Pending: benchJobs(10000, func(int) int { return 1 }, 500)})
		})
		b.Run(fmt.Sprintf("nodes=%d/jobs=10000/single-task-fragmented", nodes), func(b *testing.B) {
			cluster := benchCluster(nodes)
			runScheduleBench(b, &Snapshot{Nodes: cluster, Allocs: fragment(cluster, 1), Pending: benchJobs(10000, func(int) int { return 1 }, 0)})
		})
	}
}
