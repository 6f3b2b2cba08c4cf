package sim

import (
	"os"
	"testing"

	"github.com/durehq/dure/internal/model"
)

func TestScratchRef(t *testing.T) {
	path := os.Getenv("SCRATCH_TRACE")
	if path == "" {
		t.Skip()
	}
	f, _ := os.Open(path)
	tr, err := ReadSWF(f, "x")
	if err != nil {
		t.Fatal(err)
	}
	procs := int(tr.Nodes[0].Capacity.MilliCPU / 1000)
	if os.Getenv("RAISE") != "" {
		for i := range tr.Jobs {
			tr.Jobs[i].Request.Walltime = max(tr.Jobs[i].Request.Walltime, tr.Jobs[i].Runtime)
		}
	}
	if os.Getenv("DROP0") != "" {
		var keep []Job
		for _, j := range tr.Jobs {
			if j.Runtime > 0 {
				keep = append(keep, j)
			}
		}
		tr.Jobs = keep
	}
	if os.Getenv("ONE") != "" {
		for i := range tr.Jobs {
			if tr.Jobs[i].Runtime == 0 {
				tr.Jobs[i].Runtime = 1e9
			}
		}
	}
	starts := referenceEASYRun(tr.Jobs, procs, os.Getenv("FIFO") != "", os.Getenv("PAST") != "")
	var rs []JobResult
	for i := range tr.Jobs {
		j := &tr.Jobs[i]
		run := min(j.Runtime, j.Request.Walltime)
		if os.Getenv("PAST") != "" {
			run = j.Runtime
		}
		rs = append(rs, JobResult{ID: j.ID, Submit: j.Submit, Start: starts[i], End: starts[i] + run, Run: run, Size: j.Request.Total()})
	}
	m := ComputeMetrics(rs, model.Resources{MilliCPU: int64(procs) * 1000}, "cpu")
	t.Logf("%+v meanwait min %.1f", m, m.MeanWait.Minutes())
}
