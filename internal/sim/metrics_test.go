package sim

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/durehq/dure/internal/model"
)

func TestMetricsByHand(t *testing.T) {
	s := time.Second
	cpus := func(n int64) model.Resources { return model.Resources{MilliCPU: n * 1000} }
	results := []JobResult{
		// wait 0, bsld max(1, 10/10) = 1
		{ID: 1, Submit: 0, Start: 0, End: 10 * s, Run: 10 * s, Size: cpus(2)},
		// wait 10, bsld (10+5)/max(5,10) = 1.5
		{ID: 2, Submit: 0, Start: 10 * s, End: 15 * s, Run: 5 * s, Size: cpus(4)},
		// wait 10, bsld 110/100 = 1.1
		{ID: 3, Submit: 5 * s, Start: 15 * s, End: 115 * s, Run: 100 * s, Size: cpus(1)},
		// wait 0, run 0: bsld max(1, 0/10) = 1
		{ID: 4, Submit: 20 * s, Start: 20 * s, End: 20 * s, Run: 0, Size: cpus(1)},
	}
	got := ComputeMetrics(results, cpus(4), "cpu")
	want := Metrics{
		Jobs:        4,                 // fewer than 100 jobs: 1% of them rounds to none left out
		Utilization: 140.0 / (4 * 115), // cpu·s 2·10 + 4·5 + 1·100 over 4 cpus × 115 s (first submit to last end)
		Resource:    "cpu",
		MeanWait:    5 * s,  // (0+10+10+0)/4
		MedianWait:  5 * s,  // (0+10)/2, the two middle of 0 0 10 10
		P95Wait:     10 * s, // rank ceil(0.95·4) = 4
		MeanBSLD:    (1 + 1.5 + 1.1 + 1) / 4,
		Makespan:    115 * s,
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

func TestMetricsLeaveOutTheFirstPercentToTerminate(t *testing.T) {
	// 200 jobs; the two that end first (IDs 199 and 200, submitted last in
	// the slice) waited 10 s, all others 0. Only the first 1% to terminate,
	// those two, is left out, whatever the order of the input.
	var results []JobResult
	for i := 0; i < 200; i++ {
		r := JobResult{ID: model.JobID(i + 1), Submit: time.Duration(i+1) * time.Hour, Run: time.Minute, Size: model.Resources{MilliCPU: 1000}}
		r.Start = r.Submit
		if i >= 198 {
			r.Submit, r.Start = 0, 10*time.Second
		}
		r.End = r.Start + r.Run
		results = append(results, r)
	}
	m := ComputeMetrics(results, model.Resources{MilliCPU: 1000}, "cpu")
	if m.Jobs != 198 || m.MeanWait != 0 || m.MeanBSLD != 1 {
		t.Errorf("jobs %d, mean wait %s, mean bsld %v; want 198 jobs, 0s, 1 (the two early finishers, which waited, left out)", m.Jobs, m.MeanWait, m.MeanBSLD)
	}
	measured := Measured(results)
	if len(measured) != 198 || measured[0].ID != 1 {
		t.Errorf("Measured kept %d starting with job %d, want 198 starting with job 1", len(measured), measured[0].ID)
	}
}

func TestBoundedSlowdownUsesTheTenSecondThreshold(t *testing.T) {
	for _, tc := range []struct {
		wait, run time.Duration
		want      float64
	}{
		{0, time.Second, 1},                     // (0+1)/10 < 1
		{99 * time.Second, time.Second, 10},     // (99+1)/10
		{30 * time.Second, 30 * time.Second, 2}, // (30+30)/30
		{time.Hour, 0, 360},                     // 3600/10
	} {
		r := JobResult{Start: tc.wait, End: tc.wait + tc.run, Run: tc.run}
		if got := r.BoundedSlowdown(); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("wait %s run %s: bsld %v, want %v", tc.wait, tc.run, got, tc.want)
		}
	}
}

func TestMetricsOfGPUWorkCountGPUs(t *testing.T) {
	results := []JobResult{{ID: 1, Submit: 0, Start: 0, End: 100 * time.Second, Run: 100 * time.Second,
		Size: model.Resources{MilliCPU: 64000, GPUs: 2}}}
	m := ComputeMetrics(results, model.Resources{MilliCPU: 64000, GPUs: 8}, "gpu")
	if m.Utilization != 0.25 {
		t.Errorf("GPU utilization %v, want 0.25 (2 of 8 GPUs; the CPUs were all busy but do not count)", m.Utilization)
	}
}
