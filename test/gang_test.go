package test

import (
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// A 4-task gang with --topology rack lands in the one rack that can hold it
// whole; a second one, which no rack can hold now, waits with the numbers.
func TestTopologyKeepsGangInOneRack(t *testing.T) {
	c := newCluster(t)
	c.startAgent("n1", "--cpus", "2", "--label", "rack=r1")
	c.startAgent("n2", "--cpus", "2", "--label", "rack=r1")
	c.startAgent("n3", "--cpus", "3", "--label", "rack=r2")
	rackOf := map[string]string{"n1": "r1", "n2": "r1", "n3": "r2"}

	id := c.submit("--tasks", "4", "--cpus", "1", "--topology", "rack", "--", "sleep", "300")
	j := c.waitState(id, "running")
	racks := map[string]bool{}
	for _, a := range j.Allocations {
		racks[rackOf[a.Node]] = true
	}
	if len(j.Allocations) != 4 || len(racks) != 1 || !racks["r1"] {
		t.Fatalf("gang placed on %+v; want its 4 tasks in rack r1", j.Allocations)
	}

	second := c.submit("--tasks", "4", "--cpus", "1", "--topology", "rack", "--", "true")
	// The reason is Topology, or Reserved (the dure policy holds the next
	// start for it) with the topology's numbers in the message.
	j = c.waitJob(second, "a topology reason", 20*time.Second, func(j api.Job) bool { return strings.Contains(j.Reason.Message, "in one rack") })
	if !strings.Contains(j.Reason.Message, "gang needs 4") || !strings.Contains(j.Reason.Message, "in one rack, best rack (r2) has room for 3 tasks") {
		t.Errorf("reason = %q; want the need and the best rack's room", j.Reason.Message)
	}
	r := c.dure("explain", itoa(second))
	if !strings.Contains(r.stdout, "best rack (r2) has room for 3 tasks") {
		t.Errorf("dure explain:\n%s%s", r.stdout, r.stderr)
	}
	r = c.dure("job", itoa(second))
	if !strings.Contains(r.stdout, "all tasks in one rack") || !strings.Contains(r.stdout, "best rack (r2)") {
		t.Errorf("dure job:\n%s", r.stdout)
	}
}

// A gang of 4 with --min-tasks 2 starts with the 2 tasks that fit, tells
// them so, and succeeds when they do.
func TestMinTasksGangStartsWithWhatFits(t *testing.T) {
	c := newCluster(t, "n1", "n2") // one CPU each: room for 2 tasks
	id := c.submit("--tasks", "4", "--cpus", "1", "--min-tasks", "2", "--", "sh", "-c", "echo $DURE_TASK_INDEX of $DURE_NTASKS; sleep 1")
	j := c.waitState(id, "running")
	if j.StartedTasks != 2 || len(j.Allocations) != 2 {
		t.Fatalf("started %d tasks with %d allocations; want 2", j.StartedTasks, len(j.Allocations))
	}
	if r := c.dure("jobs"); !strings.Contains(r.stdout, "2/4") {
		t.Errorf("dure jobs does not show 2 of 4 tasks running:\n%s", r.stdout)
	}
	j = c.waitState(id, "succeeded")
	if j.Reason.Message != "all 2 task(s) exited 0" {
		t.Errorf("reason = %q", j.Reason.Message)
	}
	for task, want := range []string{"0 of 2\n", "1 of 2\n"} {
		if r := c.dure("logs", itoa(id), "--task", itoa(uint64(task))); r.stdout != want {
			t.Errorf("task %d printed %q; want %q", task, r.stdout, want)
		}
	}
	// Without a minimum the same job waits for room for all four.
	whole := c.submit("--tasks", "4", "--cpus", "1", "--", "true")
	w := c.waitJob(whole, "a pending reason", 20*time.Second, func(j api.Job) bool { return j.Reason.Code != "" && j.Reason.Code != "NotYetScheduled" })
	if w.State != "pending" || len(w.Allocations) != 0 {
		t.Errorf("4-task job without a minimum on 2 slots: %s with %d allocations; want pending", w.State, len(w.Allocations))
	}
}
