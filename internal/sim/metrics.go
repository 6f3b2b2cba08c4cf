package sim

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/durehq/dure/internal/model"
)

// BSLDThreshold is τ in the bounded slowdown max(1, (wait+run)/max(run, τ)):
// it keeps very short jobs from dominating the mean (Feitelson et al.).
const BSLDThreshold = 10 * time.Second

// WarmupFraction of the jobs, the first to terminate, is left out of the
// per-job averages, as in the published evaluations: they ran on an empty
// machine.
const WarmupFraction = 0.01

// JobResult is what happened to one job in a simulation.
type JobResult struct {
	ID     model.JobID
	Owner  string
	Queue  string
	Submit time.Duration // offsets from the trace's start
	Start  time.Duration // start of the attempt that completed
	End    time.Duration
	Run    time.Duration // End − Start
	// Killed: the job ran past its walltime and was stopped there (only with
	// kill-at-walltime, the default; Run is then the walltime).
	Killed    bool
	Preempted int             // times it was stopped to make room and requeued
	Size      model.Resources // all its tasks together (those it started with, for a partial gang)
}

// Wait is the time from submission to the start of the attempt that
// completed; work lost to preemption counts as waiting.
func (r *JobResult) Wait() time.Duration { return r.Start - r.Submit }

// BoundedSlowdown is max(1, (wait+run)/max(run, τ)).
func (r *JobResult) BoundedSlowdown() float64 {
	return math.Max(1, float64(r.Wait()+r.Run)/float64(max(r.Run, BSLDThreshold)))
}

// Metrics summarises a simulation the way the literature does.
type Metrics struct {
	// Jobs is the number of jobs the per-job averages are over: all that
	// completed but the first WarmupFraction to terminate.
	Jobs int
	// Utilization is the useful work (size × run of every completed job, in
	// the primary resource) over capacity × makespan.
	Utilization float64
	// Resource is the primary resource: "gpu" when the cluster and the jobs
	// have GPUs, else "cpu".
	Resource   string
	MeanWait   time.Duration
	MedianWait time.Duration // the mean of the two middle values for an even count
	P95Wait    time.Duration // nearest rank
	MeanBSLD   float64
	// Makespan is from the first submission to the last completion.
	Makespan time.Duration
}

// ComputeMetrics computes Metrics over results (any order). capacity is the
// cluster's total in the primary resource given by primary.
func ComputeMetrics(results []JobResult, capacity model.Resources, primary string) Metrics {
	m := Metrics{Resource: primary}
	if len(results) == 0 {
		return m
	}
	byEnd := byTermination(results)
	first, last := byEnd[0].Submit, byEnd[0].End
	var work float64
	for i := range byEnd {
		r := &byEnd[i]
		first, last = min(first, r.Submit), max(last, r.End)
		work += float64(amount(r.Size, primary)) * r.Run.Seconds()
	}
	m.Makespan = last - first
	if c := amount(capacity, primary); c > 0 && m.Makespan > 0 {
		m.Utilization = work / (float64(c) * m.Makespan.Seconds())
	}

	measured := byEnd[warmup(len(byEnd)):]
	m.Jobs = len(measured)
	if m.Jobs == 0 {
		return m
	}
	waits := make([]time.Duration, len(measured))
	var sumWait, sumBSLD float64
	for i := range measured {
		waits[i] = measured[i].Wait()
		sumWait += waits[i].Seconds()
		sumBSLD += measured[i].BoundedSlowdown()
	}
	slices.Sort(waits)
	m.MeanWait = secs(sumWait / float64(m.Jobs))
	m.MeanBSLD = sumBSLD / float64(m.Jobs)
	if n := len(waits); n%2 == 1 {
		m.MedianWait = waits[n/2]
	} else {
		m.MedianWait = (waits[n/2-1] + waits[n/2]) / 2
	}
	m.P95Wait = waits[int(math.Ceil(0.95*float64(len(waits))))-1]
	return m
}

// Measured returns the results the averages are over, in termination order:
// all but the first WarmupFraction to terminate.
func Measured(results []JobResult) []JobResult {
	byEnd := byTermination(results)
	return byEnd[warmup(len(byEnd)):]
}

// warmup is how many of n jobs, the first to terminate, are left out.
func warmup(n int) int { return int(float64(n) * WarmupFraction) }

// byTermination returns a copy of results ordered by end time, then ID.
func byTermination(results []JobResult) []JobResult {
	byEnd := slices.Clone(results)
	sort.SliceStable(byEnd, func(a, b int) bool {
		if byEnd[a].End != byEnd[b].End {
			return byEnd[a].End < byEnd[b].End
		}
		return byEnd[a].ID < byEnd[b].ID
	})
	return byEnd
}

// amount is one dimension of r: "gpu" or "cpu" (in cores).
func amount(r model.Resources, primary string) float64 {
	if primary == "gpu" {
		return float64(r.GPUs)
	}
	return float64(r.MilliCPU) / 1000
}

func secs(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

// QueueShare compares what a queue got with what it was due.
type QueueShare struct {
	Queue string
	Jobs  int // completed jobs of the queue among the measured ones
	// Share is the queue's fraction of the primary resource·time delivered
	// while jobs were waiting (contention is when fair share matters; over a
	// whole replay every queue eventually gets all it asked for).
	Share float64
	// FairShare is the queue's share of the cluster by weight when every
	// queue with jobs wants more: split from the roots down among siblings
	// with jobs (a queue's own jobs one more child of weight 1), as the
	// scheduler weighs them (weights from the queue configuration, else 1).
	FairShare float64
	// Demand is the queue's fraction of all submitted work (size × run).
	Demand   float64
	MeanWait time.Duration
	MeanBSLD float64
}
