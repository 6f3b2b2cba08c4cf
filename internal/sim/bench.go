package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
)

// BenchSpec sizes a synthetic scheduling benchmark (dure bench sched and the
// go test benchmarks share it).
type BenchSpec struct {
	Nodes  int
	Jobs   int
	Queues int    // leaf queues, in cohorts of up to 5
	Racks  int    // values of the rack label
	Seed   uint64 // same seed, same workload
}

// BenchWorkload is a generated cluster and queue.
type BenchWorkload struct {
	Nodes  []*model.Node
	Queues []*model.Queue
	Jobs   []*model.Job
	Now    time.Time // the instant passes run at; jobs were submitted in the hour before
}

// benchEpoch is the fixed "now" of generated workloads.
var benchEpoch = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// GenerateBench builds a cluster and a queue of pending jobs from a seeded
// random source. The distributions, chosen to look like a mixed HPC/ML
// centre:
//
// Nodes, in Racks contiguous racks (label rack=rNN): 20% GPU nodes with 64
// cores, 1 TiB and 8 GPUs (gpu.model H100 in even racks, A100 in odd ones,
// label pool=gpu), 80% CPU nodes with 64 cores and 256 GiB (pool=cpu).
//
// Queues: Queues leaf queues q00…, under cohorts c00… of 5; each leaf has
// weight 1–3 and a nominal quota of an equal share of the cluster's cores
// and GPUs (so queues borrow from idle siblings).
//
// Jobs: queue uniform; owner one of 20 users per queue; priority 0 (90%)
// or 1–10; submitted uniformly over the hour before Now; walltime
// log-uniform from 5 min to 24 h. 75% CPU jobs: 1 task (70%), 2–8 (20%),
// 16–64 (8%) or 128–256 (2%) tasks of 1, 2, 4, 8 or 16 cores with 2–8 GiB
// per core. 25% GPU jobs: 1 task (60%) or 2–16 tasks (40%, gang inside one
// rack) of 1, 2, 4 or 8 GPUs with 8 cores and 64 GiB per GPU; half ask for
// a GPU model.
func GenerateBench(spec BenchSpec) (*BenchWorkload, error) {
	if spec.Nodes < 1 || spec.Jobs < 0 || spec.Queues < 1 || spec.Racks < 1 {
		return nil, fmt.Errorf("bench: nodes, queues and racks must be at least 1 and jobs at least 0 (got %d, %d, %d, %d)", spec.Nodes, spec.Queues, spec.Racks, spec.Jobs)
	}
	rng := rand.New(rand.NewPCG(spec.Seed, 0x5eed))
	w := &BenchWorkload{Now: benchEpoch}
	var cores, gpus int64
	for i := 0; i < spec.Nodes; i++ {
		rack := i * spec.Racks / spec.Nodes
		labels := map[string]string{"rack": fmt.Sprintf("r%02d", rack)}
		var n *model.Node
		if rng.Float64() < 0.2 {
			gm := "H100"
			if rack%2 == 1 {
				gm = "A100"
			}
			labels["pool"], labels["gpu.model"] = "gpu", gm
			devs := make([]model.GPU, 8)
			for k := range devs {
				devs[k] = model.GPU{Index: k, Model: gm}
			}
			n = simNode("", model.Resources{MilliCPU: 64000, MemoryBytes: 1 << 40, GPUs: 8}, devs, labels)
			gpus += 8
		} else {
			labels["pool"] = "cpu"
			n = simNode("", model.Resources{MilliCPU: 64000, MemoryBytes: 256 << 30}, nil, labels)
		}
		n.Name = fmt.Sprintf("node%05d", i)
		cores += 64
		w.Nodes = append(w.Nodes, n)
	}
	cohorts := (spec.Queues + 4) / 5
	for c := 0; c < cohorts; c++ {
		w.Queues = append(w.Queues, &model.Queue{Name: fmt.Sprintf("c%02d", c)})
	}
	for q := 0; q < spec.Queues; q++ {
		w.Queues = append(w.Queues, &model.Queue{
			Name:   fmt.Sprintf("q%02d", q),
			Parent: fmt.Sprintf("c%02d", q/5),
			Weight: float64(1 + rng.IntN(3)),
			Quotas: []model.Quota{
				{Resource: "cpu", Nominal: cores * 1000 / int64(spec.Queues)},
				{Resource: "gpu", Nominal: gpus / int64(spec.Queues)},
			},
		})
	}
	for i := 0; i < spec.Jobs; i++ {
		q := rng.IntN(spec.Queues)
		j := &model.Job{
			ID:         model.JobID(i + 1),
			Name:       fmt.Sprintf("bench%d", i+1),
			Owner:      fmt.Sprintf("u%02d-%02d", q, rng.IntN(20)),
			Queue:      fmt.Sprintf("q%02d", q),
			State:      model.JobPending,
			SubmitTime: benchEpoch.Add(-time.Duration(rng.Int64N(int64(time.Hour)))),
			Walltime:   time.Duration(math.Exp(rng.Float64()*math.Log(24*60/5))*5) * time.Minute,
		}
		if rng.Float64() < 0.1 {
			j.Priority = 1 + rng.IntN(10)
		}
		g := model.TaskGroup{Name: "main", Command: []string{"bench"}}
		if rng.Float64() < 0.25 {
			per := int64([]int{1, 2, 4, 8}[rng.IntN(4)])
			g.Count = 1
			if rng.Float64() < 0.4 {
				g.Count = 2 + rng.IntN(15)
				j.Topology = "rack"
			}
			g.Resources = model.Resources{MilliCPU: 8000 * per, MemoryBytes: per * 64 << 30, GPUs: per}
			if rng.Float64() < 0.5 {
				g.Constraints = map[string]string{"gpu.model": []string{"H100", "A100"}[rng.IntN(2)]}
			}
		} else {
			switch r := rng.Float64(); {
			case r < 0.7:
				g.Count = 1
			case r < 0.9:
				g.Count = 2 + rng.IntN(7)
			case r < 0.98:
				g.Count = 16 + rng.IntN(49)
			default:
				g.Count = 128 + rng.IntN(129)
			}
			c := int64([]int{1, 2, 4, 8, 16}[rng.IntN(5)])
			g.Resources = model.Resources{MilliCPU: c * 1000, MemoryBytes: c * int64(2+rng.IntN(7)) << 30}
		}
		j.Groups = []model.TaskGroup{g}
		w.Jobs = append(w.Jobs, j)
	}
	return w, nil
}

// BenchResult is what RunBench measured.
type BenchResult struct {
	Passes     int
	Placements int           // over all passes
	Total      time.Duration // sum of pass times
	PassTimes  []time.Duration
	// CPU is the process CPU time the passes took (GC on every thread
	// included), when RunBench was given a CPU clock: what one core
	// would need.
	CPU []time.Duration
	// PlacedFirst is the placements of the first (cold) pass; Pending the
	// jobs still pending after the last.
	PlacedFirst int
	Pending     int
}

// PlacementsPerSecond is placements over the time of whole passes.
func (r *BenchResult) PlacementsPerSecond() float64 {
	if r.Total <= 0 {
		return 0
	}
	return float64(r.Placements) / r.Total.Seconds()
}

// CPUTotal is the CPU time of all passes (0 without a CPU clock).
func (r *BenchResult) CPUTotal() time.Duration {
	var t time.Duration
	for _, d := range r.CPU {
		t += d
	}
	return t
}

// PlacementsPerCPUSecond is placements over the CPU time of whole passes.
func (r *BenchResult) PlacementsPerCPUSecond() float64 {
	if t := r.CPUTotal(); t > 0 {
		return float64(r.Placements) / t.Seconds()
	}
	return 0
}

// Percentile returns the p-th percentile pass time (nearest rank).
func (r *BenchResult) Percentile(p float64) time.Duration {
	if len(r.PassTimes) == 0 {
		return 0
	}
	ts := slices.Clone(r.PassTimes)
	slices.Sort(ts)
	k := int(math.Ceil(p/100*float64(len(ts)))) - 1
	return ts[max(0, min(k, len(ts)-1))]
}

// RunBench runs passes whole scheduling passes. The first is cold: an empty
// cluster and the whole queue. Before each later one, a tenth of the running
// jobs (chosen by the seeded source) end, the way a busy cluster churns, and
// the pass schedules the rest of the queue into the freed room. clock times
// each sched.Schedule call and nothing else; cpu, if not nil, reads the
// process's CPU time around the same calls.
func RunBench(w *BenchWorkload, cfg sched.Config, passes int, seed uint64, clock func() time.Time, cpu func() time.Duration) (*BenchResult, error) {
	if passes < 1 {
		return nil, fmt.Errorf("bench: passes must be at least 1 (got %d)", passes)
	}
	rng := rand.New(rand.NewPCG(seed, 0xbe4c))
	pending := slices.Clone(w.Jobs)
	byID := make(map[model.JobID]*model.Job, len(pending))
	for _, j := range pending {
		byID[j.ID] = j
	}
	var runningIDs []model.JobID
	var allocs []*model.Allocation
	res := &BenchResult{}
	now := w.Now
	var scratch sched.Scratch // as a server's loop keeps one
	for p := 0; p < passes; p++ {
		snap := &sched.Snapshot{Nodes: w.Nodes, Allocs: allocs, Pending: pending, Queues: w.Queues}
		var c0 time.Duration
		if cpu != nil {
			c0 = cpu()
		}
		t0 := clock()
		plan := scratch.Schedule(snap, now, cfg)
		d := clock().Sub(t0)
		if cpu != nil {
			res.CPU = append(res.CPU, cpu()-c0)
		}
		res.Passes++
		res.Total += d
		res.PassTimes = append(res.PassTimes, d)
		res.Placements += len(plan.Placements)
		if p == 0 {
			res.PlacedFirst = len(plan.Placements)
		}
		placed := map[model.JobID]bool{}
		for _, pl := range plan.Placements {
			j := byID[pl.JobID]
			if j == nil {
				return nil, fmt.Errorf("%w: placement for unknown job %d", ErrPlanInvalid, pl.JobID)
			}
			if !placed[pl.JobID] {
				runningIDs = append(runningIDs, pl.JobID)
			}
			placed[pl.JobID] = true
			a := &model.Allocation{
				ID: model.AllocID(pl.JobID, pl.TaskIndex, 1), JobID: pl.JobID, Group: pl.Group, TaskIndex: pl.TaskIndex,
				Attempt: 1, Node: pl.Node, Resources: pl.Resources, GPUIndices: pl.GPUIndices,
				Walltime: j.Walltime, Owner: j.Owner, Queue: j.Queue, Priority: j.Priority, JobName: j.Name,
				Desired: model.DesiredRun, Status: model.AllocRunning, CreatedAt: now, StartedAt: now,
			}
			allocs = append(allocs, a)
		}
		pending = slices.DeleteFunc(pending, func(j *model.Job) bool { return placed[j.ID] })
		// Churn: a tenth of the running jobs end a minute later.
		now = now.Add(time.Minute)
		rng.Shuffle(len(runningIDs), func(a, b int) { runningIDs[a], runningIDs[b] = runningIDs[b], runningIDs[a] })
		cut := len(runningIDs) / 10
		ended := map[model.JobID]bool{}
		for _, id := range runningIDs[:cut] {
			ended[id] = true
		}
		runningIDs = runningIDs[cut:]
		allocs = slices.DeleteFunc(allocs, func(a *model.Allocation) bool { return ended[a.JobID] })
	}
	res.Pending = len(pending)
	return res, nil
}
