package sim

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
)

// partialTrace: on three one-CPU nodes, job 1 holds one node for 100 s;
// job 2 asks for 4 one-CPU tasks but may start with 2 (MinTasks), so it
// is not larger than the cluster: it starts at 1 s with the 2 free nodes.
func partialTrace() (*Trace, []*model.Node) {
	cpu := model.Resources{MilliCPU: 1000}
	tr := &Trace{Name: "partial", Format: FormatSWF, Jobs: []Job{
		{ID: 1, Submit: 0, Runtime: 100 * time.Second, Request: Request{Tasks: 1, PerTask: cpu, Walltime: time.Hour}},
		{ID: 2, Submit: time.Second, Runtime: 50 * time.Second, Request: Request{Tasks: 4, MinTasks: 2, PerTask: cpu, Walltime: time.Hour}},
	}}
	nodes, err := ParseNodes("3x1cpu")
	if err != nil {
		panic(err)
	}
	return tr, nodes
}

// The scheduler may start a gang with fewer tasks than it asked for (at
// least MinTasks); the simulator runs it with the tasks it started with
// and counts only their work.
func TestPartialGangRunsWithTheTasksItStartedWith(t *testing.T) {
	tr, nodes := partialTrace()
	res, err := Run(tr, Options{Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) != 2 || len(res.Dropped) != 0 {
		t.Fatalf("completed %d jobs, dropped %v; want both to run", len(res.Jobs), res.Dropped)
	}
	var j2 JobResult
	for _, r := range res.Jobs {
		if r.ID == 2 {
			j2 = r
		}
	}
	if j2.Start != time.Second || j2.Run != 50*time.Second || j2.Size.MilliCPU != 2000 {
		t.Errorf("job 2: start %s, run %s, size %s; want it started at 1s with 2 of its 4 tasks for 50s", j2.Start, j2.Run, j2.Size)
	}
	// Work: 1 CPU × 100 s + 2 CPUs × 50 s over 3 CPUs × 100 s.
	if want := 200.0 / 300; res.Metrics.Utilization < want-1e-9 || res.Metrics.Utilization > want+1e-9 {
		t.Errorf("utilization %v, want %v", res.Metrics.Utilization, want)
	}
	// While both ran, all three CPUs were busy.
	busy := 0.0
	for _, u := range res.Usage {
		if u.At <= 10*time.Second {
			busy = u.Busy
		}
	}
	if busy != 3 {
		t.Errorf("busy CPUs at 10s: %v, want 3 (usage %v)", busy, res.Usage)
	}
}

// Fewer tasks than the gang's minimum is still a plan the simulator
// refuses.
func TestPartialGangBelowItsMinimumIsRejected(t *testing.T) {
	tr, nodes := partialTrace()
	one := func(s *sched.Snapshot, _ time.Time, _ sched.Config) *sched.Plan {
		for _, j := range s.Pending {
			if j.ID == 2 {
				return &sched.Plan{Placements: []sched.Placement{{JobID: 2, Group: "main", Node: "n1", Resources: model.Resources{MilliCPU: 1000}}}}
			}
		}
		return &sched.Plan{}
	}
	_, err := run(tr, Options{Nodes: nodes}, one)
	if !errors.Is(err, ErrPlanInvalid) || !strings.Contains(err.Error(), "placed with 1 task, want 2 to 4 tasks") {
		t.Fatalf("err = %v, want ErrPlanInvalid for 1 task of a gang of at least 2", err)
	}
}
