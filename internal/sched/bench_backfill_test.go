package sched

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// backfillWorkload is a busy cluster with a long queue: 10,000 nodes in 50
// racks, nearly full of running jobs with walltimes (started over the last
// hours), and `pending` jobs over 50 queues (in 5 cohorts with GPU and CPU
// quotas) and 200 owners, with walltimes, some gangs in one rack, and a
// finished-job history of 5,000 jobs. Most pending jobs do not fit: the
// pass is fair share, quota checks, a reservation, backfill checks and
// reasons.
func backfillWorkload(pending int) *Snapshot {
	nodes := benchCluster(10000)
	for i, n := range nodes {
		n.Labels["rack"] = fmt.Sprintf("r%d", i%50)
	}
	rng := rand.New(rand.NewPCG(7, 0))
	now := testkit.Epoch
	var allocs []*model.Allocation
	for i, n := range nodes {
		// Fill each node with 1-3 jobs to 75-100% of its CPU.
		left := n.Capacity.MilliCPU
		for k := 0; k < 3 && left > 0; k++ {
			c := min(left, (n.Capacity.MilliCPU/4)*(1+rng.Int64N(2)))
			b := testkit.Alloc(model.JobID(2_000_000+len(allocs)), 0, n.Name).MilliCPU(c).Mem("4G")
			if k == 0 && n.Capacity.GPUs > 0 {
				b.GPUIndices(0, 1, 2, 3, 4, 5)
			}
			a := b.Build()
			a.Walltime = time.Duration(1+rng.IntN(8)) * time.Hour
			a.StartedAt = now.Add(-time.Duration(rng.IntN(int(a.Walltime/time.Minute))) * time.Minute)
			a.Queue = fmt.Sprintf("q%02d", (i+k)%50)
			a.Owner = fmt.Sprintf("u%03d", (i*7+k)%200)
			allocs = append(allocs, a)
			left -= c
			if left < n.Capacity.MilliCPU/4 {
				break
			}
		}
	}
	var queues []*model.Queue
	for c := 0; c < 5; c++ {
		queues = append(queues, &model.Queue{Name: fmt.Sprintf("cohort%d", c)})
	}
	for q := 0; q < 50; q++ {
		lend := int64(100)
		queues = append(queues, &model.Queue{Name: fmt.Sprintf("q%02d", q), Parent: fmt.Sprintf("cohort%d", q%5), Weight: float64(1 + q%3),
			Quotas: []model.Quota{{Resource: "gpu", Nominal: 300, LendingLimit: &lend}, {Resource: "cpu", Nominal: 10_000_000}}})
	}
	jobs := benchJobs(pending, func(i int) int { return 1 + (i%17)/8 }, 0)
	for i, j := range jobs {
		j.Queue = fmt.Sprintf("q%02d", i%50)
		j.Owner = fmt.Sprintf("u%03d", (i*13)%200)
		j.Walltime = time.Duration(10+rng.IntN(600)) * time.Minute
		j.SubmitTime = now.Add(-time.Duration(rng.IntN(3600)) * time.Second)
		if i%40 == 0 {
			j.Topology = "rack"
		}
	}
	var history []model.FinishedJob
	for i := 0; i < 5000; i++ {
		end := now.Add(-time.Duration(5000-i) * time.Minute)
		ran := time.Duration(1+rng.IntN(300)) * time.Minute
		history = append(history, model.FinishedJob{ID: model.JobID(i + 1), Owner: fmt.Sprintf("u%03d", i%200), Queue: fmt.Sprintf("q%02d", i%50),
			Usage: model.Resources{MilliCPU: 4000, MemoryBytes: 8 << 30}, Requested: 2 * ran, Ran: ran, StartTime: end.Add(-ran), EndTime: end})
	}
	return &Snapshot{Nodes: nodes, Allocs: allocs, Pending: jobs, Queues: queues, History: history}
}

// BenchmarkBackfillPass: one full pass over 10,000 pending jobs on a busy
// 10,000-node cluster, for dure's policy (fair share, quotas, preemption
// attempts, a reservation, backfill of the rest, reasons) and EASY on the
// same input; conservative (a reservation for every blocked job, each a
// sweep of the cluster) over 500. Passes share a Scratch, as the server's
// loop does.
func BenchmarkBackfillPass(b *testing.B) {
	for _, c := range []struct {
		pol     Policy
		pending int
	}{{PolicyDure, 10000}, {PolicyEASY, 10000}, {PolicyConservative, 500}} {
		s := backfillWorkload(c.pending)
		pol := c.pol
		b.Run(fmt.Sprintf("%s/pending=%d", pol, c.pending), func(b *testing.B) {
			b.ReportAllocs()
			var plan *Plan
			var sc Scratch
			cpu0 := cpuTime()
			for b.Loop() {
				plan = sc.Schedule(s, testkit.Epoch, Config{Policy: pol})
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/pass")
			b.ReportMetric(float64(len(plan.Placements)), "placements/op")
			b.ReportMetric(float64(len(plan.Reservations)), "reservations/op")
			b.ReportMetric(float64(len(plan.Preemptions)), "preemptions/op")
		})
	}
}
