package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// start marks a submitted job running with one allocation per task.
func start(j *api.Job) {
	j.State, j.Reason, j.Attempt, j.StartTime = "running", api.Reason{}, 1, t0
	for i := range j.Tasks {
		j.Allocations = append(j.Allocations, api.Allocation{ID: fmt.Sprintf("%d.%d.1", j.ID, i),
			JobID: j.ID, TaskIndex: i, Node: "n1", Status: "running", StartedAt: t0})
	}
}

func TestRunStreamsOutputAndExitsWithTheJobsCode(t *testing.T) {
	tests := []struct {
		name string
		end  func(j *api.Job)
		want cliResult
	}{
		{"success", finish("succeeded", 0, api.Reason{Code: "Completed"}),
			cliResult{stdout: "hello\n", stderr: "warn\n"}},
		{"task exit code", finish("failed", 3, api.Reason{Code: "TaskFailed", Message: "task 0 exited 3"}),
			cliResult{stdout: "hello\n", stderr: "warn\ndure: job 1 failed: TaskFailed: task 0 exited 3\n", code: 3}},
		{"failure without an exit code", finish("failed", 0, api.Reason{Code: "NodeLost", Message: "node n1 went down"}),
			cliResult{stdout: "hello\n", stderr: "warn\ndure: job 1 failed: NodeLost: node n1 went down\n", code: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			srv.onSubmit = func(id uint64) {
				srv.update(id, start)
				srv.appendLog(id, 0, "stdout", "hello\n", true)
				srv.appendLog(id, 0, "stderr", "warn\n", true)
				srv.update(id, tt.end)
			}
			res := runCLI(t, srv.srv.URL, "", "run", "--", "echo", "hello")
			if res != tt.want {
				t.Errorf("got %+v, want %+v", res, tt.want)
			}
		})
	}
}

func TestRunStreamsWhileTheJobRuns(t *testing.T) {
	srv := newFakeServer(t)
	srv.onSubmit = func(id uint64) {
		srv.update(id, start)
		srv.appendLog(id, 0, "stdout", "part 1\n", false)
		srv.appendLog(id, 0, "stderr", "", false)
	}
	done := make(chan cliResult)
	go func() { done <- runCLI(t, srv.srv.URL, "", "run", "--", "train") }()
	// A followed stream delivered part 1 and now waits: the job still runs.
	srv.awaitWaiting("/v1/jobs/1/logs?")
	srv.appendLog(1, 0, "stdout", "part 2\n", true)
	srv.appendLog(1, 0, "stderr", "", true)
	srv.update(1, finish("succeeded", 0, api.Reason{}))
	if res := <-done; res != (cliResult{stdout: "part 1\npart 2\n"}) {
		t.Errorf("got %+v", res)
	}
}

func TestRunReadsOutputOfTasksThatStartLate(t *testing.T) {
	srv := newFakeServer(t)
	srv.onSubmit = func(id uint64) { srv.update(id, start) } // running, no output yet: logs answer 404
	done := make(chan cliResult)
	go func() { done <- runCLI(t, srv.srv.URL, "", "run", "--", "x") }()
	srv.awaitWaiting("/v1/jobs/1") // dure run watches the running job
	srv.appendLog(1, 0, "stdout", "late\n", true)
	srv.update(1, finish("succeeded", 0, api.Reason{}))
	if res := <-done; res != (cliResult{stdout: "late\n"}) {
		t.Errorf("got %+v", res)
	}
}

func TestRunMultiTaskKeepsLinesWhole(t *testing.T) {
	srv := newFakeServer(t)
	srv.onSubmit = func(id uint64) {
		srv.update(id, start)
		for task := range 3 {
			srv.appendLog(id, task, "stdout", "task ", false)
			srv.appendLog(id, task, "stderr", "", true)
		}
		for task := range 3 {
			srv.appendLog(id, task, "stdout", string(rune('0'+task))+" says hi\nno newline at end", true)
		}
		srv.update(id, finish("succeeded", 0, api.Reason{}))
	}
	res := runCLI(t, srv.srv.URL, "", "run", "--tasks", "3", "--", "x")
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("got %+v", res)
	}
	// "task " and "N says hi" arrive apart but print as one line; each
	// task's unterminated last line is flushed when its stream ends.
	for task := range 3 {
		if line := fmt.Sprintf("task %d says hi\n", task); !strings.Contains(res.stdout, line) {
			t.Errorf("stdout lacks the whole line %q:\n%s", line, res.stdout)
		}
	}
	if n := strings.Count(res.stdout, "no newline at end"); n != 3 || len(res.stdout) != 3*len("task 0 says hi\nno newline at end") {
		t.Errorf("stdout has %d unterminated tails and %d bytes; want 3 and every byte once:\n%s", n, len(res.stdout), res.stdout)
	}
}

func TestRunInterruptCancelsTheJob(t *testing.T) {
	srv := newFakeServer(t) // nothing runs it: the job stays pending
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan cliResult)
	go func() { done <- runCLIContext(t, ctx, srv.srv.URL, "", "run", "--", "sleep", "100") }()
	srv.awaitWaiting("/v1/jobs/1") // dure run watches the pending job
	cancel()                       // what Ctrl-C does
	res := <-done
	if want := (cliResult{stderr: "dure: interrupted: cancelled job 1\n", code: 130}); res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
	if j := srv.job(1); j.State != "cancelled" {
		t.Errorf("job is %s on the server, want cancelled", j.State)
	}
}

func TestRunSubmitErrorExits1(t *testing.T) {
	srv := newFakeServer(t)
	srv.submitErr = &api.Error{Code: api.CodeInvalid, Field: "queue", Message: "no queue named \"nope\""}
	res := runCLI(t, srv.srv.URL, "", "run", "--queue", "nope", "--", "true")
	if want := (cliResult{stderr: "dure: queue: no queue named \"nope\"\n", code: 1}); res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
}

func TestJobExit(t *testing.T) {
	tests := []struct {
		name     string
		job      api.Job
		wantCode int // -1: success (nil error)
		wantMsg  string
	}{
		{"succeeded", api.Job{ID: 1, State: "succeeded"}, -1, ""},
		{"exit code passes through", api.Job{ID: 1, State: "failed", ExitCode: 42, Reason: api.Reason{Code: "TaskFailed"}}, 42, "job 1 failed: TaskFailed"},
		{"out of range exit code becomes 1", api.Job{ID: 1, State: "failed", ExitCode: -9, Reason: api.Reason{Code: "TaskFailed", Message: "killed by SIGKILL"}}, 1, "job 1 failed: TaskFailed: killed by SIGKILL"},
		{"cancelled", api.Job{ID: 2, State: "cancelled", Reason: api.Reason{Code: "Cancelled", Message: "cancelled by bob"}}, 1, "job 2 cancelled: Cancelled: cancelled by bob"},
		{"start failed", api.Job{ID: 3, State: "failed", Reason: api.Reason{Message: "exec: \"nope\": not found"}}, 1, "job 3 failed: exec: \"nope\": not found"},
		{"no reason", api.Job{ID: 4, State: "failed"}, 1, "job 4 failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := jobExit(&tt.job)
			if tt.wantCode == -1 {
				if err != nil {
					t.Errorf("jobExit = %v, want nil", err)
				}
				return
			}
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Code != tt.wantCode || ee.Err == nil || ee.Err.Error() != tt.wantMsg {
				t.Errorf("jobExit = %#v, want code %d and %q", err, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestProgressText(t *testing.T) {
	j := api.Job{State: "pending", SubmitTime: t0.Add(-14*time.Second - 300*time.Millisecond),
		Reason: api.Reason{Code: "Resources", Message: "no node has room now"}}
	if got, want := progressText(&j, t0), "pending 14s — Resources: no node has room now"; got != want {
		t.Errorf("progressText = %q, want %q", got, want)
	}
}

func TestProgressDrawsOnlyOnATerminalAndErasesItself(t *testing.T) {
	var buf bytes.Buffer
	w := &lockedWriter{w: &buf}
	j := api.Job{ID: 7, State: "pending", SubmitTime: t0.Add(-3 * time.Second), Reason: api.Reason{Code: "Priority"}}

	p := newProgress(w, true, 7, func() time.Time { return t0 })
	p.update(&j)
	deadline := time.Now().Add(30 * time.Second)
	for {
		w.mu.Lock()
		drawn := strings.Contains(buf.String(), "job 7 pending 3s — Priority")
		w.mu.Unlock()
		if drawn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress line within 30s; wrote %q", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.stop()
	p.stop() // safe twice
	if got := buf.String(); !strings.HasPrefix(got, "\r\033[K") || !strings.HasSuffix(got, "\r\033[K") {
		t.Errorf("progress output %q does not start by clearing the line and end erased", got)
	}

	buf.Reset()
	q := newProgress(w, false, 7, func() time.Time { return t0 })
	q.update(&j)
	q.stop()
	if buf.Len() != 0 {
		t.Errorf("off a terminal the progress line wrote %q; want nothing", buf.String())
	}
}

// Off a terminal `dure run` prints only the job's output, except once, on
// stderr, when the job cannot start on the cluster as it is: a script must
// not hang in silence on a request no node can meet.
func TestRunSaysOnceWhenTheJobCannotStart(t *testing.T) {
	srv := newFakeServer(t)
	srv.onSubmit = func(id uint64) {
		nofit := func(j *api.Job) {
			j.Reason = api.Reason{Code: "NoNodeFits", Message: "each task needs cpu=1 gpu=5; the largest ready node has cpu=1 (n1)"}
		}
		srv.update(id, nofit)
		<-srv.waiting // the CLI saw it and waits for a change
		srv.update(id, nofit)
		<-srv.waiting
		srv.update(id, func(j *api.Job) { j.State, j.Reason = "cancelled", api.Reason{Code: "Cancelled", Message: "by bob"} })
	}
	res := runCLI(t, srv.srv.URL, "", "run", "--gpus", "5", "--", "true")
	want := "dure: job 1 is pending and will not start on the cluster as it is: NoNodeFits: each task needs cpu=1 gpu=5; the largest ready node has cpu=1 (n1) (still waiting; Ctrl-C cancels it)\n" +
		"dure: job 1 cancelled: Cancelled: by bob\n"
	if res.code != 1 || res.stdout != "" || res.stderr != want {
		t.Errorf("got %+v\nwant stderr:\n%s", res, want)
	}
}
