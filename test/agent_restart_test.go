package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// newClusterHB is newCluster with a longer heartbeat timeout, so that an
// agent restart (or an agent down for a few seconds) is not a node loss.
func newClusterHB(t *testing.T, timeout time.Duration, agents ...string) *cluster {
	t.Helper()
	c := &cluster{
		t: t, addr: freeAddr(t), data: t.TempDir(), agents: map[string]*proc{},
		hbFlags: []string{"--heartbeat-interval", "200ms", "--heartbeat-timeout", timeout.String()},
	}
	c.client = api.NewClient(c.addr)
	c.startServer()
	for _, name := range agents {
		c.startAgent(name)
	}
	// Registered last, so it runs first: jobs are cancelled while the
	// agents still run, as newCluster does.
	t.Cleanup(c.cleanup)
	return c
}

// TestAgentRestartKeepsTasks kills an agent with SIGKILL while its task runs
// and starts it again on the same data directory: the task is not touched
// (its supervisor parents it), the job is never requeued, and the true exit
// code reaches the servers — also when the task ends while no agent runs.
func TestAgentRestartKeepsTasks(t *testing.T) {
	tests := []struct {
		name string
		// task runs for this long; the agent is restarted at once, or only
		// after the task ended.
		task           string
		restartAfterIt bool
	}{
		{"task keeps running through the restart", "sleep 4", false},
		{"task ends while the agent is down", "sleep 1", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterHB(t, 10*time.Second, "n1")
			marks := filepath.Join(c.data, "marks.log")
			script := fmt.Sprintf(`echo "start $DURE_ALLOC_ID" >> %[1]s; %[2]s; echo "end $DURE_ALLOC_ID" >> %[1]s; exit 7`, shellQuote(marks), tc.task)
			id := c.submit("--name", "survivor", "--cpus", "0.5", "--", "sh", "-c", script)
			running := c.waitJob(id, "its task running", 20*time.Second, func(j api.Job) bool {
				return len(j.Allocations) == 1 && j.Allocations[0].Status == "running"
			})
			alloc := running.Allocations[0].ID
			if pids := taskProcs(alloc, marks); len(pids) == 0 {
				t.Fatalf("job %d is running but no process has DURE_ALLOC_ID=%s", id, alloc)
			}

			c.agents["n1"].stop(syscall.SIGKILL)
			if tc.restartAfterIt {
				// The task ends with no agent: wait until its last line is
				// written and no process of it is left.
				poll(t, "the task to end while the agent is down", 20*time.Second, func() error {
					b, _ := os.ReadFile(marks)
					if !strings.Contains(string(b), "end "+alloc) {
						return fmt.Errorf("marks so far: %q", b)
					}
					if pids := taskProcs(alloc, marks); len(pids) > 0 {
						return fmt.Errorf("task processes %v still exist", pids)
					}
					return nil
				})
				if j := c.job(id); j.State != "running" {
					t.Fatalf("with the agent down and the task ended, the servers say %s; want still running (nobody has reported)", j.State)
				}
			} else if pids := taskProcs(alloc, marks); len(pids) == 0 {
				t.Fatalf("killing the agent killed task %s", alloc)
			}
			c.startAgent("n1") // same --data: it adopts the task

			j := c.waitJob(id, "a final state", 30*time.Second, func(j api.Job) bool { return j.Terminal() })
			if j.State != "failed" || j.ExitCode != 7 {
				t.Errorf("job ended %s with exit code %d, want failed with the task's exit code 7 (reason %+v)", j.State, j.ExitCode, j.Reason)
			}
			if j.Attempt != 1 || len(j.Allocations) != 1 || j.Allocations[0].ID != alloc {
				t.Errorf("job has attempt %d and allocations %+v; want the one first allocation %s (never requeued)", j.Attempt, j.Allocations, alloc)
			} else if a := j.Allocations[0]; a.Status != "exited" || a.ExitCode != 7 || a.Signal != "" {
				t.Errorf("allocation ended %s exit %d signal %q, want exited with code 7", a.Status, a.ExitCode, a.Signal)
			}
			for _, e := range j.Events {
				if e.Type == "requeued" {
					t.Errorf("job was requeued: %+v", e)
				}
			}
			b, _ := os.ReadFile(marks)
			want := []string{"start " + alloc, "end " + alloc}
			if got := strings.Fields(strings.ReplaceAll(string(b), " ", "_")); !slices.Equal(got, []string{"start_" + alloc, "end_" + alloc}) {
				t.Errorf("task marks %q, want exactly %q: the task ran once, to its end", b, want)
			}
			if n, err := c.client.GetNode(t.Context(), "n1"); err != nil || n.State != "ready" {
				t.Errorf("node after the restart: %+v %v, want ready", n, err)
			}
		})
	}
}

// TestLogsFollowAcrossAgentRestart follows a task's output while its agent
// is stopped and started again: the task keeps running under its
// supervisor, so `dure logs -f` must keep streaming through the restart and
// end only when the task does, with every line once.
func TestLogsFollowAcrossAgentRestart(t *testing.T) {
	followLogsAcross(t, func(c *cluster) {
		c.agents["n1"].stop(syscall.SIGTERM)
		c.startAgent("n1") // same --data: it adopts the task and serves its log
	})
}

// followLogsAcross runs a task that prints 16 lines over 4 s, follows them
// with `dure logs -f`, calls restart once the first line arrived, and checks
// that the follower ends with the task, exit 0, every line once, and that
// the job succeeds.
func followLogsAcross(t *testing.T, restart func(c *cluster)) {
	t.Helper()
	c := newClusterHB(t, 10*time.Second, "n1")
	id := c.submit("--cpus", "0.5", "--", "sh", "-c", "for i in $(seq 1 16); do echo line $i; sleep 0.25; done")
	c.waitJob(id, "its task running", 20*time.Second, func(j api.Job) bool {
		return len(j.Allocations) == 1 && j.Allocations[0].Status == "running"
	})
	follower := startProc(t, "dure logs -f", "--addr", "http://"+c.addr, "logs", "-f", itoa(id))
	poll(t, "the first line to be followed", 20*time.Second, func() error {
		if !strings.Contains(follower.output(), "line 1\n") {
			return fmt.Errorf("output so far %q", follower.output())
		}
		return nil
	})
	restart(c)
	select {
	case <-follower.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("dure logs -f still runs 30 s after the restart; output %q", follower.output())
	}
	var want strings.Builder
	for i := 1; i <= 16; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if got := follower.output(); got != want.String() || follower.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("dure logs -f exited %d with output %q; want exit 0 and every line once, %q", follower.cmd.ProcessState.ExitCode(), got, want.String())
	}
	if j := c.waitJob(id, "a final state", 30*time.Second, func(j api.Job) bool { return j.Terminal() }); j.State != "succeeded" {
		t.Errorf("job ended %s, want succeeded", j.State)
	}
}
