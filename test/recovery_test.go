package test

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
	dexec "github.com/durehq/dure/internal/exec"
)

func TestServerRestartRecoversState(t *testing.T) {
	c := newCluster(t, "n1")
	done := c.submit("--name", "finished", "--", "sh", "-c", "exit 4")
	c.waitState(done, "failed")
	pending := c.submit("--name", "too-big", "--cpus", "64", "--", "true")
	c.waitJob(pending, "a pending reason", 10*time.Second, func(j api.Job) bool { return j.Reason.Code == "NoNodeFits" })
	c.dure("node", "drain", "n1", "--reason", "kept across restarts")
	// The drain changes the pending job's reason in the next scheduling
	// pass; compare the state after that pass, not one caught before it.
	c.waitJob(pending, "the drained node in its reason", 10*time.Second, func(j api.Job) bool { return j.Reason.Code == "NoNodes" })
	before := c.dure("jobs", "-o", "json").stdout

	c.server.stop(syscall.SIGTERM)
	c.startServer()

	if after := c.dure("jobs", "-o", "json").stdout; after != before {
		t.Errorf("jobs after restart differ:\nbefore: %s\nafter:  %s", before, after)
	}
	j := c.job(done)
	if j.State != "failed" || j.ExitCode != 4 {
		t.Errorf("finished job after restart: %s exit %d, want failed 4", j.State, j.ExitCode)
	}
	c.waitNode("n1", "drained") // the agent re-registers with the restarted server; the drain is kept
	n, _ := c.client.GetNode(context.Background(), "n1")
	if n.DrainReason != "kept across restarts" {
		t.Errorf("drain reason after restart = %q", n.DrainReason)
	}
	c.dure("node", "undrain", "n1")
	next := c.submit("--", "true")
	if next <= pending {
		t.Errorf("new job ID %d after restart, want above %d (IDs are never reused)", next, pending)
	}
	c.waitState(next, "succeeded")
}

func TestAgentKilledNodeDownWorkRequeuedOrFailed(t *testing.T) {
	c := newCluster(t, "n1", "n2")
	retried := c.submit("--retries", "1", "--cpus", "0.5", "--constraint", "host=n1", "--", "sleep", "300")
	once := c.submit("--retries", "0", "--cpus", "0.5", "--constraint", "host=n1", "--", "sleep", "300")
	for _, id := range []uint64{retried, once} {
		c.waitJob(id, "running on n1", 20*time.Second, func(j api.Job) bool {
			return len(j.Allocations) == 1 && j.Allocations[0].Status == "running"
		})
	}
	c.agents["n1"].stop(syscall.SIGKILL)
	c.waitNode("n1", "down")

	f := c.waitState(once, "failed")
	if f.Reason.Code != "NodeLost" || f.Allocations[0].Status != "lost" {
		t.Errorf("job without retries: reason %+v alloc %s, want NodeLost and a lost allocation", f.Reason, f.Allocations[0].Status)
	}
	r := c.waitJob(retried, "requeued", 10*time.Second, func(j api.Job) bool { return j.State == "pending" && j.Attempt == 1 })
	requeued := false
	for _, e := range r.Events {
		requeued = requeued || (e.Type == "requeued" && strings.Contains(e.Message, "n1"))
	}
	if !requeued {
		t.Errorf("job with a retry: events %+v, want a requeued event naming node n1", r.Events)
	}
	// The requeued job may only run on n1 (its constraint): it waits for the node.
	// Kill what the dead agent left behind first, as an operator rebooting it would.
	killStragglers(filepath.Join(c.data, "agent-n1"))
	c.startAgent("n1")
	j := c.waitJob(retried, "running again", 20*time.Second, func(j api.Job) bool { return j.State == "running" && j.Attempt == 2 })
	var ids []string
	for _, a := range j.Allocations {
		ids = append(ids, a.ID+"="+a.Status)
	}
	if len(j.Allocations) != 2 {
		t.Errorf("allocations %v, want the lost first attempt and a second one", ids)
	}
}

func TestDevModeRunsJobsAndKeepsStateWithData(t *testing.T) {
	addr := freeAddr(t)
	data := t.TempDir()
	// With --data the agents keep their cgroup parent (dure-dev/) for a
	// restart to adopt tasks; the test removes it once everything stopped.
	t.Cleanup(func() { dexec.RemoveCgroupTree("dure-dev") })
	dev := startProc(t, "dure dev", "dev", "--agents", "2", "--addr", addr, "--data", data, "--log-level", "warn")
	client := api.NewClient(addr)
	waitNodes := func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			nodes, err := client.ListNodes(context.Background())
			ready := 0
			for _, n := range nodes {
				if n.State == "ready" {
					ready++
				}
			}
			if err == nil && ready == 2 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("dure dev: 2 ready nodes not seen; output:\n%s", dev.output())
	}
	waitNodes()
	if !strings.Contains(dev.output(), "run -- echo hello") {
		t.Errorf("dure dev banner does not say how to run a first job:\n%s", dev.output())
	}
	r := runCLI(t, addr, nil, "run", "--", "echo", "hello from dev")
	if r.code != 0 || r.stdout != "hello from dev\n" {
		t.Fatalf("dure run on dev: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	dev.stop(syscall.SIGTERM)

	dev = startProc(t, "dure dev (restarted)", "dev", "--agents", "2", "--addr", addr, "--data", data, "--log-level", "warn")
	waitNodes()
	jobs, _, err := client.ListJobs(context.Background(), api.JobFilter{}, api.WatchOptions{})
	if err != nil || len(jobs) != 1 || jobs[0].State != "succeeded" {
		t.Fatalf("after restart with --data: jobs %+v (%v), want the one succeeded job", jobs, err)
	}
	dev.stop(syscall.SIGTERM)
	killStragglers(data)
}

// TestLogsFollowAcrossServerRestart follows a task's output while the
// server restarts: `dure logs -f` picks the stream up again from where it
// broke and ends with the task, every line once, as `dure run` does.
func TestLogsFollowAcrossServerRestart(t *testing.T) {
	followLogsAcross(t, func(c *cluster) {
		c.server.stop(syscall.SIGTERM)
		c.startServer()
	})
}
