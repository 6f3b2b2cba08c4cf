package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// B afterok A starts only once A succeeded, and waits with a reason meanwhile.
func TestAfterOKChainRunsInOrder(t *testing.T) {
	c := newCluster(t)
	c.startAgent("n1", "--cpus", "2") // room for both at once: only the dependency orders them
	a := c.submit("--name", "a", "--", "sleep", "1")
	b := c.submit("--name", "b", "--afterok", itoa(a), "--", "true")
	j := c.waitJob(b, "a dependency reason", 20*time.Second, func(j api.Job) bool { return j.Reason.Code == "Dependency" })
	if j.State != "pending" || !strings.Contains(j.Reason.Message, fmt.Sprintf("waiting for job %d (afterok", a)) {
		t.Errorf("B = %s %+v; want pending, waiting for A", j.State, j.Reason)
	}
	if r := c.dure("wait", "--timeout", "60s", itoa(b)); r.code != 0 {
		t.Fatalf("dure wait B: %+v", r)
	}
	ja, jb := c.job(a), c.job(b)
	if ja.State != "succeeded" {
		t.Fatalf("A is %s", ja.State)
	}
	if end, start := ja.Allocations[0].FinishedAt, jb.Allocations[0].StartedAt; start.Before(end) {
		t.Errorf("B started at %s, before A finished at %s", start, end)
	}
	r := c.dure("job", itoa(b))
	if !strings.Contains(r.stdout, fmt.Sprintf("Depends on:  afterok:%d", a)) {
		t.Errorf("dure job B does not show the dependency:\n%s", r.stdout)
	}
}

// afterok on a job that fails can never be met: the dependent ends at once
// as cancelled with DependencyNeverSatisfied, and so does a chain behind it;
// afternotok on the same job runs.
func TestAfterOKOnFailingJobEndsDependent(t *testing.T) {
	c := newCluster(t, "n1")
	a := c.submit("--", "sh", "-c", "sleep 0.5; exit 3")
	b := c.submit("--afterok", itoa(a), "--", "true")
	chained := c.submit("-d", "afterok:"+itoa(b), "--", "true")
	rescue := c.submit("--afternotok", itoa(a), "--", "true")

	jb := c.waitState(b, "cancelled")
	if jb.Reason.Code != "DependencyNeverSatisfied" || !strings.Contains(jb.Reason.Message, fmt.Sprintf("afterok:%d can never be satisfied: job %d failed", a, a)) {
		t.Errorf("B reason = %+v; want DependencyNeverSatisfied naming A's failure", jb.Reason)
	}
	if len(jb.Allocations) != 0 {
		t.Errorf("B ran: %+v", jb.Allocations)
	}
	if jc := c.waitState(chained, "cancelled"); jc.Reason.Code != "DependencyNeverSatisfied" {
		t.Errorf("job behind B: reason %+v", jc.Reason)
	}
	c.waitState(rescue, "succeeded")
	if r := c.dure("wait", itoa(b)); r.code != 1 || !strings.Contains(r.stdout, "DependencyNeverSatisfied") {
		t.Errorf("dure wait B: %+v; want exit 1 with the reason", r)
	}

	// A dependency on a job that does not exist is refused at submit.
	r := c.dure("submit", "--afterok", "999", "--", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "dependency afterok:999: no such job") {
		t.Errorf("afterok on an unknown job: %+v; want a refusal", r)
	}
}

// A dependency on an array's ID waits for every element.
func TestAfterOKOnWholeArray(t *testing.T) {
	c := newCluster(t)
	c.startAgent("n1", "--cpus", "4")
	arr := c.submit("--array", "1-3", "--", "sh", "-c", "sleep 0.$DURE_ARRAY_TASK_ID")
	after := c.submit("--afterok", itoa(arr), "--", "true")
	if r := c.dure("wait", "--timeout", "60s", itoa(after)); r.code != 0 {
		t.Fatalf("dure wait: %+v", r)
	}
	last := time.Time{}
	for _, e := range c.arrayElements(arr) {
		if f := e.Allocations[0].FinishedAt; f.After(last) {
			last = f
		}
	}
	if start := c.job(after).Allocations[0].StartedAt; start.Before(last) {
		t.Errorf("the dependent started at %s, before the last element finished at %s", start, last)
	}
}
