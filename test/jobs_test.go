package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

func TestRunStreamsOutputAndExitsWithJobCode(t *testing.T) {
	c := newCluster(t, "n1")
	r := c.dure("run", "--", "sh", "-c", "echo out-line; echo err-line >&2; exit 3")
	if r.code != 3 {
		t.Errorf("dure run exit code = %d, want 3 (the job's); stderr: %s", r.code, r.stderr)
	}
	if r.stdout != "out-line\n" {
		t.Errorf("dure run stdout = %q, want %q", r.stdout, "out-line\n")
	}
	if !strings.Contains(r.stderr, "err-line") {
		t.Errorf("dure run stderr = %q, want the task's stderr line", r.stderr)
	}
	if r := c.dure("run", "--", "true"); r.code != 0 {
		t.Errorf("dure run -- true: exit %d, want 0; stderr %s", r.code, r.stderr)
	}
}

func TestSubmitWaitLogsAndHistory(t *testing.T) {
	c := newCluster(t, "n1")
	id := c.submit("--name", "hello", "--", "sh", "-c", "echo task $DURE_TASK_INDEX of $DURE_NTASKS in job $DURE_JOB_ID; test -d \"$DURE_SCRATCH\"")
	if r := c.dure("wait", "--timeout", "30s", itoa(id)); r.code != 0 {
		t.Fatalf("dure wait: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	r := c.dure("logs", itoa(id))
	want := "task 0 of 1 in job " + itoa(id) + "\n"
	if r.stdout != want {
		t.Errorf("dure logs = %q, want %q", r.stdout, want)
	}
	// History stays queryable after the job finished.
	r = c.dure("job", itoa(id), "-o", "json")
	var j api.Job
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatalf("dure job -o json: %v: %q", err, r.stdout)
	}
	if j.State != "succeeded" || j.ExitCode != 0 || j.Name != "hello" || j.Owner != "e2e" {
		t.Errorf("job = state %s exit %d name %q owner %q, want succeeded 0 hello e2e", j.State, j.ExitCode, j.Name, j.Owner)
	}
	if len(j.Allocations) != 1 || j.Allocations[0].Node != "n1" || j.Allocations[0].StartedAt.IsZero() || j.Allocations[0].FinishedAt.IsZero() {
		t.Errorf("allocations = %+v, want one on n1 with start and finish times", j.Allocations)
	}
	if j.SubmitTime.IsZero() || j.StartTime.IsZero() || j.EndTime.IsZero() || j.EndTime.Before(j.StartTime) {
		t.Errorf("times: submit %v start %v end %v", j.SubmitTime, j.StartTime, j.EndTime)
	}
	r = c.dure("jobs", "--state", "succeeded")
	if !strings.Contains(r.stdout, "hello") {
		t.Errorf("dure jobs --state succeeded does not list the job:\n%s", r.stdout)
	}
}

// dure sbatch with Slurm's options on the command line: they override the
// script's #SBATCH lines, --wrap needs no script, and words after the script
// are its arguments even when they look like options.
func TestSbatchCommandLineOptions(t *testing.T) {
	c := newCluster(t, "n1")
	sbatch := func(args ...string) uint64 {
		t.Helper()
		r := c.dure(append([]string{"sbatch", "--parsable"}, args...)...)
		if r.code != 0 {
			t.Fatalf("dure sbatch %q: exit %d: %s", args, r.code, r.stderr)
		}
		id, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64)
		if err != nil {
			t.Fatalf("dure sbatch --parsable printed %q, want a job ID", r.stdout)
		}
		return id
	}
	script := filepath.Join(t.TempDir(), "job.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n#SBATCH -J from-script -t 5\necho \"args: $*\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, wantName, wantLogs string
		wantTime                 time.Duration
		args                     []string
	}{
		{"--wrap", "x", "hi\n", time.Minute, []string{"-J", "x", "-t", "1:00", "--wrap", "echo hi"}},
		{"over a script", "override", "args: -J not-an-option\n", 2 * time.Minute, []string{"--job-name=override", "-t2", script, "-J", "not-an-option"}},
	}
	for _, tc := range cases {
		id := sbatch(tc.args...)
		if r := c.dure("wait", "--timeout", "30s", itoa(id)); r.code != 0 {
			t.Fatalf("%s: dure wait: exit %d: %s%s", tc.name, r.code, r.stdout, r.stderr)
		}
		if r := c.dure("logs", itoa(id)); r.stdout != tc.wantLogs {
			t.Errorf("%s: dure logs = %q, want %q", tc.name, r.stdout, tc.wantLogs)
		}
		j := c.job(id)
		if j.State != "succeeded" || j.Name != tc.wantName || time.Duration(j.Walltime) != tc.wantTime {
			t.Errorf("%s: job state %s name %q walltime %v; want succeeded, %q, %v", tc.name, j.State, j.Name, time.Duration(j.Walltime), tc.wantName, tc.wantTime)
		}
	}
}

func TestCancelStopsRunningTask(t *testing.T) {
	c := newCluster(t, "n1")
	id := c.submit("--", "sleep", "300")
	c.waitJob(id, "task running", 20*time.Second, func(j api.Job) bool {
		return len(j.Allocations) == 1 && j.Allocations[0].Status == "running"
	})
	r := c.dure("cancel", itoa(id))
	if r.code != 0 {
		t.Fatalf("dure cancel: exit %d: %s", r.code, r.stderr)
	}
	j := c.waitJob(id, "task stopped", 20*time.Second, func(j api.Job) bool {
		return j.State == "cancelled" && j.Allocations[0].Status == "exited"
	})
	if j.Allocations[0].Signal == "" {
		t.Errorf("cancelled task: signal %q, want it killed by a signal (SIGTERM)", j.Allocations[0].Signal)
	}
	if r := c.dure("cancel", itoa(id)); r.code == 0 || !strings.Contains(r.stderr, "already cancelled") {
		t.Errorf("second cancel: exit %d stderr %q, want an error saying it is already cancelled", r.code, r.stderr)
	}
}

func TestWalltimeKill(t *testing.T) {
	c := newCluster(t, "n1")
	// The task ignores SIGTERM, so the agent must escalate to SIGKILL after the grace.
	id := c.submit("--time", "1s", "--", "sh", "-c", "trap '' TERM; sleep 300")
	j := c.waitState(id, "failed")
	if j.Reason.Code != "TimeLimit" || !j.Allocations[0].TimedOut {
		t.Errorf("reason = %+v timed_out=%v, want TimeLimit", j.Reason, j.Allocations[0].TimedOut)
	}
	if j.Allocations[0].Signal != "SIGKILL" {
		t.Errorf("signal = %q, want SIGKILL (the task ignored SIGTERM)", j.Allocations[0].Signal)
	}
}

func TestMemoryLimitKill(t *testing.T) {
	c := newCluster(t, "n1")
	// tail holds a newline-free stream in memory: far past a 32 MiB limit.
	id := c.submit("--mem", "32M", "--", "sh", "-c", "head -c 400M /dev/zero | tail")
	j := c.waitState(id, "failed")
	if j.Reason.Code != "OutOfMemory" || !j.Allocations[0].OOMKilled {
		t.Errorf("reason = %+v oom=%v, want OutOfMemory", j.Reason, j.Allocations[0].OOMKilled)
	}
}

func TestMultiTaskJobStartsAllOrNothing(t *testing.T) {
	c := newCluster(t, "n1", "n2")
	// Two tasks of one CPU each: one per node, running at the same time.
	id := c.submit("--tasks", "2", "--cpus", "1", "--", "sh", "-c", "echo $DURE_TASK_INDEX on $DURE_NODE; sleep 1")
	j := c.waitState(id, "succeeded")
	nodes := map[string]bool{}
	for _, a := range j.Allocations {
		nodes[a.Node] = true
	}
	if len(nodes) != 2 {
		t.Errorf("tasks ran on %v, want both nodes", nodes)
	}

	// Block n1 with a one-CPU job; a two-task job must not start half of itself on n2.
	blocker := c.submit("--cpus", "1", "--constraint", "host=n1", "--", "sleep", "300")
	c.waitState(blocker, "running")
	gang := c.submit("--tasks", "2", "--cpus", "1", "--", "sleep", "1")
	g := c.waitJob(gang, "a pending reason", 10*time.Second, func(j api.Job) bool { return j.State == "pending" && j.Reason.Code != "NotYetScheduled" })
	if len(g.Allocations) != 0 {
		t.Fatalf("gang job has %d allocations while blocked, want 0 (all or nothing)", len(g.Allocations))
	}
	c.dure("cancel", itoa(blocker))
	g = c.waitState(gang, "succeeded")
	if len(g.Allocations) != 2 {
		t.Errorf("gang job: %d allocations, want 2", len(g.Allocations))
	}

	// Three one-CPU tasks can never fit on two one-CPU nodes: pending with a reason, not rejected.
	never := c.submit("--tasks", "3", "--cpus", "1", "--", "true")
	n := c.waitJob(never, "a pending reason", 10*time.Second, func(j api.Job) bool { return j.Reason.Code != "" && j.Reason.Code != "NotYetScheduled" })
	if n.State != "pending" || n.Reason.Message == "" {
		t.Errorf("impossible job: state %s reason %+v, want pending with a reason", n.State, n.Reason)
	}
}

func TestNodeDrainAndUndrain(t *testing.T) {
	c := newCluster(t, "n1", "n2")
	if r := c.dure("node", "drain", "n1", "--reason", "maintenance"); r.code != 0 {
		t.Fatalf("dure node drain: exit %d: %s", r.code, r.stderr)
	}
	for range 3 {
		id := c.submit("--", "true")
		j := c.waitState(id, "succeeded")
		if j.Allocations[0].Node != "n2" {
			t.Fatalf("job placed on %s while n1 is drained", j.Allocations[0].Node)
		}
	}
	c.dure("node", "drain", "n2")
	id := c.submit("--", "true")
	j := c.waitJob(id, "a pending reason", 10*time.Second, func(j api.Job) bool { return j.Reason.Code != "" && j.Reason.Code != "NotYetScheduled" })
	if j.State != "pending" {
		t.Fatalf("job %s with every node drained, want pending", j.State)
	}
	r := c.dure("nodes")
	if !strings.Contains(r.stdout, "drained") {
		t.Errorf("dure nodes does not show the drained state:\n%s", r.stdout)
	}
	c.dure("node", "undrain", "n1")
	c.waitState(id, "succeeded")
}

func TestBadInputIsRejectedWithField(t *testing.T) {
	c := newCluster(t, "n1")
	r := c.dure("submit", "--cpus", "-1", "--", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "cpu") {
		t.Errorf("negative cpus: exit %d stderr %q, want an error naming the cpu field", r.code, r.stderr)
	}
	r = runCLI(t, c.addr, []byte("name: x\ncommand: [true]\ncolour: blue\n"), "submit", "-")
	if r.code == 0 || !strings.Contains(r.stderr, "colour") {
		t.Errorf("unknown field in job file: exit %d stderr %q, want an error naming colour", r.code, r.stderr)
	}
	if r := c.dure("job", "99999"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("unknown job: exit %d stderr %q", r.code, r.stderr)
	}
	// The API itself refuses what the CLI would have caught.
	_, err := c.client.SubmitJob(context.Background(), api.JobSpec{Groups: []api.TaskGroupSpec{{Count: -2, Command: []string{"true"}}}})
	var ae *api.Error
	if !asAPIError(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Field, "count") {
		t.Errorf("API submit with count -2: %v, want 400 naming groups[0].count", err)
	}
	// A job larger than any node is accepted and left pending with the reason.
	id := c.submit("--cpus", "64", "--", "true")
	j := c.waitJob(id, "a pending reason", 10*time.Second, func(j api.Job) bool { return j.Reason.Code == "NoNodeFits" })
	if !strings.Contains(j.Reason.Message, "64") {
		t.Errorf("reason message %q should give the numbers", j.Reason.Message)
	}
	// Nothing bad reached the state: exactly the one valid job exists.
	jobs, _, err := c.client.ListJobs(context.Background(), api.JobFilter{}, api.WatchOptions{})
	if err != nil || len(jobs) != 1 {
		t.Errorf("jobs after bad input = %d (%v), want exactly 1", len(jobs), err)
	}
}

// `dure run` stays attached to its job: Ctrl-C (SIGINT), SIGTERM, or the
// terminal going away (SIGHUP, as when an ssh session drops) cancels the job
// and exits 130, saying so, like srun. A job left running by a dead `dure
// run` is one nobody watches.
func TestRunInterruptedCancelsItsJob(t *testing.T) {
	c := newCluster(t, "n1")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			var out, errb syncWriter
			out.b, errb.b = &bytes.Buffer{}, &bytes.Buffer{}
			cmd := exec.Command(dureBin, "run", "--cpus", "100m", "--", "sh", "-c", "echo started; sleep 60")
			cmd.Env = append(os.Environ(), "DURE_ADDR=http://"+c.addr, "USER=e2e")
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			defer func() { _ = cmd.Process.Kill() }()
			poll(t, "the job's first line", 30*time.Second, func() error {
				if !strings.Contains(out.String(), "started") {
					return fmt.Errorf("stdout %q", out.String())
				}
				return nil
			})
			_ = cmd.Process.Signal(sig)
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("dure run still running 30s after %s", sig)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 130 {
				t.Errorf("dure run after %s: %v; want exit 130", sig, err)
			}
			stderr := errb.String()
			if !strings.HasPrefix(stderr, "dure: interrupted: cancelled job ") {
				t.Fatalf("stderr %q; want it to say the job was cancelled", stderr)
			}
			id, perr := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(stderr, "dure: interrupted: cancelled job ")), 10, 64)
			if perr != nil {
				t.Fatalf("stderr %q: no job ID", stderr)
			}
			if j := c.job(id); j.State != "cancelled" {
				t.Errorf("job %d after %s: %s; want cancelled", id, sig, j.State)
			}
		})
	}
}

// `dure logs -f` on a pending job waits for it to be placed and then
// streams its output. The state has the allocation a moment before the
// node's agent has started the task; the follow must not fail in between
// ("allocation … has no task on node …"), so try several times.
func TestLogsFollowOfAPendingJob(t *testing.T) {
	c := newCluster(t, "n1")
	for i := range 4 {
		c.submit("--", "sleep", "0.5") // holds n1's only CPU
		id := c.submit("--", "sh", "-c", "echo after the wait; echo done")
		r := c.dure("logs", "-f", itoa(id))
		if r.code != 0 || r.stdout != "after the wait\ndone\n" {
			t.Fatalf("try %d: dure logs -f %d: exit %d, stdout %q, stderr %q; want the job's two lines", i, id, r.code, r.stdout, r.stderr)
		}
	}
}

// The agent relaxes its own timers (1 ms of timer slack: Go's sysmon wakes
// less often), but the supervisor daemon it starts, and the tasks, keep
// the slack the agent was started with.
func TestTasksKeepTheTimerSlackTheAgentStartedWith(t *testing.T) {
	want, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		t.Skip(err)
	}
	c := newCluster(t, "n1")
	agentSlack, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", c.agents["n1"].cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(agentSlack)) != "1000000" {
		t.Errorf("the agent's main thread has %q ns of timer slack; want 1000000 (relaxed)", strings.TrimSpace(string(agentSlack)))
	}
	r := c.dure("run", "--", "cat", "/proc/self/timerslack_ns")
	if r.code != 0 || r.stdout != string(want) {
		t.Errorf("a task's timer slack: %q (exit %d, %s); want %q, what the agent was started with", r.stdout, r.code, r.stderr, want)
	}
}
