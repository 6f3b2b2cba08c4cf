package sim

import (
	"os"
	"testing"
	"time"

	"github.com/durehq/dure/internal/sched"
)

func TestScratch(t *testing.T) {
	path := os.Getenv("SCRATCH_TRACE")
	if path == "" {
		t.Skip()
	}
	t0 := time.Now()
	tr, err := OpenTrace(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read %d jobs in %s dropped %v notes %v nodes %d", len(tr.Jobs), time.Since(t0), tr.Dropped, tr.Notes, len(tr.Nodes))
	var nodes = tr.Nodes
	if spec := os.Getenv("SCRATCH_NODES"); spec != "" {
		nodes, err = ParseNodes(spec)
		if err != nil {
			t.Fatal(err)
		}
	}
	t0 = time.Now()
	res, err := Run(tr, Options{Nodes: nodes, Config: sched.Config{Policy: sched.Policy(os.Getenv("SCRATCH_POLICY"))}, Clock: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sim in %s passes %d sched %s never %d", time.Since(t0), res.Passes, res.SchedTime, len(res.NeverStarted))
	t.Logf("%+v", res.Metrics)
	t.Logf("%+v dropped %v", res.Queues, res.Dropped)
}
