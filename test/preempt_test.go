package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// newPreemptCluster starts a server whose preempted tasks get grace to
// checkpoint (with more server flags, if any), and agent n1 with two CPUs.
func newPreemptCluster(t *testing.T, grace time.Duration, serverFlags ...string) *cluster {
	t.Helper()
	c := &cluster{
		t: t, addr: freeAddr(t), data: t.TempDir(), agents: map[string]*proc{},
		hbFlags: append([]string{"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s", "--preempt-grace", grace.String()}, serverFlags...),
	}
	c.client = api.NewClient(c.addr)
	c.startServer()
	c.startAgent("n1", "--cpus", "2")
	t.Cleanup(c.cleanup) // registered last, so it runs first: jobs end while the agent runs
	return c
}

// watchNodes records, until the test ends, every time the server showed a
// node using more than its capacity.
func watchNodes(c *cluster) (overcommits func() []string) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			nodes, err := c.client.ListNodes(ctx)
			if err == nil {
				for _, n := range nodes {
					if n.Used.MilliCPU > n.Capacity.MilliCPU || n.Used.MemoryBytes > n.Capacity.MemoryBytes {
						mu.Lock()
						seen = append(seen, fmt.Sprintf("%s uses %+v of %+v", n.Name, n.Used, n.Capacity))
						mu.Unlock()
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	c.t.Cleanup(func() { cancel(); <-done })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// waitLogs polls `dure logs` until the job's latest output contains want.
func (c *cluster) waitLogs(id uint64, want string) {
	c.t.Helper()
	c.eventually(fmt.Sprintf("job %d to print %q", id, want), 30*time.Second, func() error {
		if r := c.dure("logs", itoa(id)); !strings.Contains(r.stdout, want) {
			return fmt.Errorf("logs %q (exit %d, %s)", r.stdout, r.code, r.stderr)
		}
		return nil
	})
}

func eventTypes(j api.Job) []string {
	var out []string
	for _, e := range j.Events {
		out = append(out, e.Type)
	}
	return out
}

// TestPreemptionCheckpointsAndRequeues: a low-priority job holds the whole
// node; a high-priority job of the same queue arrives. The victim gets
// SIGTERM, writes its checkpoint, and is requeued without using a retry;
// the preemptor runs once the victim has stopped; the victim then resumes
// from its checkpoint and succeeds. No node is ever over-committed.
func TestPreemptionCheckpointsAndRequeues(t *testing.T) {
	c := newPreemptCluster(t, 10*time.Second)
	overcommits := watchNodes(c)
	dir := t.TempDir()
	// On SIGTERM the task checkpoints, then waits for the test's go-ahead
	// (so that the preemptor's wait can be observed), then exits 0.
	script := fmt.Sprintf(`d=%s
trap 'echo checkpoint; touch $d/ckpt; while [ ! -e $d/go ]; do sleep 0.05; done; exit 0' TERM
if [ -e $d/ckpt ]; then echo resumed from checkpoint; exit 0; fi
echo started
while :; do sleep 0.1; done`, dir)
	victim := c.submit("--name", "low", "--cpus", "2", "--mem", "64M", "--", "sh", "-c", script)
	c.waitLogs(victim, "started")

	preemptor := c.submit("--name", "high", "--priority", "5", "--cpus", "2", "--mem", "64M", "--", "sh", "-c", "echo high; sleep 1")
	p := c.waitJob(preemptor, "the preemptor to wait for its victim", 30*time.Second, func(j api.Job) bool {
		return j.State != "pending" || j.Reason.Code == "Preempting"
	})
	if p.State != "pending" || !strings.Contains(p.Reason.Message, "job "+itoa(victim)) {
		t.Fatalf("preemptor: %s %+v; want pending, Preempting naming job %d", p.State, p.Reason, victim)
	}
	v := c.waitJob(victim, "the victim to be asked to stop", 30*time.Second, func(j api.Job) bool { return j.PreemptedBy == preemptor })
	if v.State != "running" || v.Reason.Code != "Preempted" || len(v.Allocations) != 1 ||
		v.Allocations[0].Desired != "stop" || time.Duration(v.Allocations[0].StopGrace) != 10*time.Second {
		t.Fatalf("victim being preempted: %s %+v allocs %+v; want running, Preempted, its allocation desired stop with 10s grace", v.State, v.Reason, v.Allocations)
	}
	c.eventually("the victim's checkpoint on SIGTERM", 30*time.Second, func() error {
		_, err := os.Stat(filepath.Join(dir, "ckpt"))
		return err
	})
	// While the victim stops, the preemptor says why it waits.
	if r := c.dure("job", itoa(preemptor)); !strings.Contains(r.stdout, "Preempting: ") {
		t.Errorf("dure job %d while its victim stops:\n%s\nwant the reason Preempting", preemptor, r.stdout)
	}
	if r := c.dure("explain", itoa(preemptor)); r.code != 0 || !strings.Contains(r.stdout, "Preempting") || !strings.Contains(r.stdout, itoa(victim)) {
		t.Errorf("dure explain %d while its victim stops (exit %d):\n%s%s\nwant Preempting naming job %d", preemptor, r.code, r.stdout, r.stderr, victim)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	v = c.waitJob(victim, "the victim to be requeued", 30*time.Second, func(j api.Job) bool { return j.Preemptions == 1 })
	if v.State != "pending" && v.State != "running" {
		t.Errorf("victim after it stopped: %s; want pending (requeued)", v.State)
	}
	c.waitLogs(victim, "checkpoint")

	c.waitState(preemptor, "succeeded")
	v = c.waitState(victim, "succeeded")
	c.waitLogs(victim, "resumed from checkpoint")

	r := c.dure("job", itoa(victim), "-o", "json")
	var final api.Job
	if err := json.Unmarshal([]byte(r.stdout), &final); err != nil {
		t.Fatalf("dure job -o json: %v: %q", err, r.stdout)
	}
	if final.State != "succeeded" || final.Attempt != 2 || final.Preemptions != 1 || final.MaxRetries != 0 || final.PreemptedBy != 0 {
		t.Errorf("victim at the end: %s attempt %d preemptions %d max_retries %d preempted_by %d; want succeeded, 2, 1, 0 (no retry used), 0",
			final.State, final.Attempt, final.Preemptions, final.MaxRetries, final.PreemptedBy)
	}
	types := eventTypes(final)
	if want := []string{"submitted", "placed", "preempting", "preempted", "placed", "succeeded"}; !slices.Equal(types, want) {
		t.Errorf("victim's events %v; want %v", types, want)
	}

	// The node has two CPUs and each job takes both: no two tasks may
	// have run at the same time, by the agent's own clock.
	pj := c.job(preemptor)
	var first, second api.Allocation
	for _, a := range final.Allocations {
		if a.Attempt == 1 {
			first = a
		} else {
			second = a
		}
	}
	if !first.Stopped || first.FinishedAt.IsZero() {
		t.Errorf("victim's first attempt: %+v; want it ended by the stop", first)
	}
	if len(pj.Allocations) != 1 || pj.Allocations[0].StartedAt.Before(first.FinishedAt) {
		t.Errorf("preemptor started %v, before its victim ended at %v", pj.Allocations[0].StartedAt, first.FinishedAt)
	}
	if second.StartedAt.Before(pj.Allocations[0].FinishedAt) {
		t.Errorf("victim's second attempt started %v, before the preemptor ended at %v", second.StartedAt, pj.Allocations[0].FinishedAt)
	}
	if o := overcommits(); len(o) > 0 {
		t.Errorf("nodes over-committed: %v", o)
	}
}

// checkpointScript is a task that, on SIGTERM, prints "checkpoint" and
// leaves a checkpoint file in dir, and that, started again with the file
// there, prints "resumed from checkpoint" and exits 0.
func checkpointScript(dir string) string {
	return fmt.Sprintf(`d=%s
trap 'echo checkpoint; touch $d/ckpt; exit 0' TERM
if [ -e $d/ckpt ]; then echo resumed from checkpoint; exit 0; fi
echo started
while :; do sleep 0.1; done`, dir)
}

// TestReclaimPreemptsTheBorrower: queue nlp borrows vision's unused CPU
// quota; when a vision job arrives, the nlp job is preempted (reclaim),
// checkpoints, waits while the vision job runs, and then resumes — once:
// it must not take the reclaimed quota back before the vision job starts.
func TestReclaimPreemptsTheBorrower(t *testing.T) {
	queues := filepath.Join(t.TempDir(), "queues.yaml")
	if err := os.WriteFile(queues, []byte(`queues:
  - name: research
  - name: vision
    parent: research
    quotas: [{resource: cpu, nominal: 1000}]
  - name: nlp
    parent: research
    quotas: [{resource: cpu, nominal: 1000}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newPreemptCluster(t, 10*time.Second, "--queues", queues)
	overcommits := watchNodes(c)
	borrower := c.submit("--name", "nlp-big", "--queue", "nlp", "--cpus", "2", "--mem", "64M", "--", "sh", "-c", checkpointScript(t.TempDir()))
	c.waitLogs(borrower, "started")
	if r := c.dure("queues"); !strings.Contains(r.stdout, "cpu 2/1 (+1 borrowed)") || !strings.Contains(r.stdout, "cpu 0/1 (1 lent of 1 lendable)") {
		t.Errorf("dure queues while nlp borrows:\n%s\nwant nlp at cpu 2/1 (+1 borrowed), vision at cpu 0/1 (1 lent of 1 lendable)", r.stdout)
	}

	owner := c.submit("--name", "vision", "--queue", "vision", "--cpus", "1", "--mem", "64M", "--", "sh", "-c", "echo vision; sleep 1")
	v := c.waitJob(borrower, "the borrower to be preempted", 30*time.Second, func(j api.Job) bool { return j.Preemptions == 1 })
	if !strings.Contains(v.Reason.Message, "queue vision reclaims quota that queue nlp borrowed") {
		t.Errorf("borrower's reason %+v; want the reclaim named", v.Reason)
	}
	c.waitLogs(borrower, "checkpoint")
	o := c.waitState(owner, "succeeded")
	b := c.waitState(borrower, "succeeded")
	c.waitLogs(borrower, "resumed from checkpoint")
	if b.Attempt != 2 || b.Preemptions != 1 {
		t.Errorf("borrower: attempt %d preemptions %d; want 2, 1 (preempted once, not again and again)", b.Attempt, b.Preemptions)
	}
	var first, last api.Allocation
	for _, a := range b.Allocations {
		switch a.Attempt {
		case 1:
			first = a
		case b.Attempt:
			last = a
		}
	}
	if len(o.Allocations) != 1 || o.Allocations[0].StartedAt.Before(first.FinishedAt) {
		t.Errorf("vision job started %v, before the borrower stopped at %v", o.Allocations[0].StartedAt, first.FinishedAt)
	}
	if last.StartedAt.Before(o.Allocations[0].FinishedAt) {
		t.Errorf("borrower resumed at %v, while the vision job ran (until %v): the reclaimed quota was lent again at once",
			last.StartedAt, o.Allocations[0].FinishedAt)
	}
	if o := overcommits(); len(o) > 0 {
		t.Errorf("nodes over-committed: %v", o)
	}
}
