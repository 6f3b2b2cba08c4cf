package cli

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// pendingJob is a job the server holds in the queue.
func pendingJob(id uint64) api.Job {
	return api.Job{ID: id, Name: "j", Owner: "alice", Queue: "default", State: "pending", Tasks: 1,
		Groups:     []api.TaskGroupSpec{{Name: "main", Count: 1, Command: []string{"true"}}},
		Reason:     api.Reason{Code: "Resources", Message: "no node has room now"},
		SubmitTime: t0.Add(-time.Minute)}
}

func finish(state string, exit int, reason api.Reason) func(j *api.Job) {
	return func(j *api.Job) {
		j.State, j.ExitCode, j.Reason = state, exit, reason
		j.StartTime, j.EndTime = t0, t0.Add(time.Second)
	}
}

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	sort.Strings(l)
	return l
}

func TestWaitBlocksUntilEveryJobIsFinal(t *testing.T) {
	tests := []struct {
		name      string
		finishes  []func(j *api.Job) // for jobs 1, 2
		wantLines string             // sorted
		wantCode  int
	}{
		{"all succeeded", []func(*api.Job){finish("succeeded", 0, api.Reason{Code: "Completed"}), finish("succeeded", 0, api.Reason{Code: "Completed"})},
			"1 succeeded (exit 0)\n2 succeeded (exit 0)", 0},
		{"one exited non-zero", []func(*api.Job){finish("succeeded", 0, api.Reason{}), finish("failed", 3, api.Reason{Code: "TaskFailed", Message: "task 0 exited 3"})},
			"1 succeeded (exit 0)\n2 failed (exit 3)", 1},
		{"one cancelled", []func(*api.Job){finish("cancelled", 0, api.Reason{Code: "Cancelled", Message: "cancelled by bob"}), finish("succeeded", 0, api.Reason{})},
			"1 cancelled (Cancelled: cancelled by bob)\n2 succeeded (exit 0)", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			srv.addJob(pendingJob(1))
			srv.addJob(pendingJob(2))
			done := make(chan cliResult)
			go func() { done <- runCLI(t, srv.srv.URL, "", "wait", "1", "2") }()
			for i, f := range tt.finishes {
				srv.awaitWaiting("/v1/jobs/") // the CLI saw a job still pending
				srv.update(uint64(i+1), f)
			}
			res := <-done
			if got := strings.Join(sortedLines(res.stdout), "\n"); got != tt.wantLines || res.code != tt.wantCode || res.stderr != "" {
				t.Errorf("got %+v; want lines %q and exit %d", res, tt.wantLines, tt.wantCode)
			}
		})
	}
}

func TestWaitTimeoutExits2(t *testing.T) {
	srv := newFakeServer(t)
	srv.addJob(pendingJob(1))
	res := runCLI(t, srv.srv.URL, "", "wait", "--timeout", "200ms", "1")
	// On a machine so loaded that even the first read took 200ms, the CLI
	// never learnt the state: it then says "not finished".
	ok := res == (cliResult{stdout: "1 still pending after 200ms\n", code: 2}) ||
		res == (cliResult{stdout: "1 not finished after 200ms\n", code: 2})
	if !ok {
		t.Errorf("got %+v, want exit 2 and \"1 still pending after 200ms\"", res)
	}
}

func TestWaitUnknownJobExits1(t *testing.T) {
	srv := newFakeServer(t)
	j := pendingJob(1)
	finish("succeeded", 0, api.Reason{})(&j)
	srv.addJob(j)
	res := runCLI(t, srv.srv.URL, "", "wait", "1", "99")
	if want := (cliResult{stdout: "1 succeeded (exit 0)\n", stderr: "dure: job 99 not found\n", code: 1}); res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
}

func TestCancel(t *testing.T) {
	srv := newFakeServer(t)
	srv.addJob(pendingJob(12))
	done := pendingJob(10)
	finish("succeeded", 0, api.Reason{})(&done)
	srv.addJob(done)
	res := runCLI(t, srv.srv.URL, "", "cancel", "12", "99", "10", "abc")
	want := cliResult{
		stdout: "cancelled 12\n",
		stderr: "dure: job 99 not found\ndure: job 10 already succeeded\ndure: invalid job ID \"abc\": want a positive number like 12, or an array element like 12_3\n",
		code:   1,
	}
	if res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
	if j := srv.job(12); j.State != "cancelled" {
		t.Errorf("job 12 is %s on the server, want cancelled", j.State)
	}
	if res := runCLI(t, srv.srv.URL, "", "cancel"); res.code != 1 || !strings.Contains(res.stderr, "requires at least 1 arg") {
		t.Errorf("cancel without IDs: %+v", res)
	}
}

func TestOutcome(t *testing.T) {
	tests := []struct {
		job  api.Job
		want string
	}{
		{api.Job{ID: 1, State: "succeeded"}, "1 succeeded (exit 0)"},
		{api.Job{ID: 2, State: "failed", ExitCode: 137, Reason: api.Reason{Code: "OutOfMemory", Message: "task 0 was OOM-killed"}}, "2 failed (exit 137)"},
		{api.Job{ID: 3, State: "failed", Reason: api.Reason{Code: "NodeLost", Message: "node n3 went down"}}, "3 failed (NodeLost: node n3 went down)"},
		{api.Job{ID: 4, State: "cancelled", Reason: api.Reason{Code: "Cancelled"}}, "4 cancelled (Cancelled)"},
		{api.Job{ID: 5, State: "cancelled"}, "5 cancelled"},
		// A task whose supervisor died has no exit code (-1): the reason says so.
		{api.Job{ID: 6, State: "failed", ExitCode: -1, Reason: api.Reason{Code: "TaskFailed", Message: "task 0 on n1 ended without an exit status (lost)"}},
			"6 failed (TaskFailed: task 0 on n1 ended without an exit status (lost))"},
	}
	for _, tt := range tests {
		if got := outcome(&tt.job); got != tt.want {
			t.Errorf("outcome = %q, want %q", got, tt.want)
		}
	}
}

func TestLogs(t *testing.T) {
	srv := newFakeServer(t)
	j := pendingJob(5)
	j.State = "running"
	srv.addJob(j)
	srv.appendLog(5, 0, "stdout", "out line\n", true)
	srv.appendLog(5, 0, "stderr", "err line\n", true)
	srv.appendLog(5, 1, "stdout", "task one\n", true)

	tests := []struct {
		args []string
		want cliResult
	}{
		{[]string{"logs", "5"}, cliResult{stdout: "out line\n"}},
		{[]string{"logs", "5", "--stderr"}, cliResult{stdout: "err line\n"}},
		{[]string{"logs", "5", "--task", "1"}, cliResult{stdout: "task one\n"}},
		{[]string{"logs", "5", "--task", "2"}, cliResult{stderr: "dure: task 2 of job 5 has not started\n", code: 1}},
		{[]string{"logs", "6"}, cliResult{stderr: "dure: job 6 not found\n", code: 1}},
		{[]string{"logs", "5", "--task", "-1"}, cliResult{stderr: "dure: --task: must be 0 or more (got -1)\n", code: 1}},
	}
	for _, tt := range tests {
		if got := runCLI(t, srv.srv.URL, "", tt.args...); got != tt.want {
			t.Errorf("dure %q: got %+v, want %+v", tt.args, got, tt.want)
		}
	}
}

func TestLogsFollowStreamsUntilTheTaskEnds(t *testing.T) {
	srv := newFakeServer(t)
	j := pendingJob(5)
	j.State = "running"
	srv.addJob(j)
	srv.appendLog(5, 0, "stdout", "step 1\n", false)
	done := make(chan cliResult)
	go func() { done <- runCLI(t, srv.srv.URL, "", "logs", "-f", "5") }()
	srv.awaitWaiting("/v1/jobs/5/logs") // "step 1" was sent; the stream waits for more
	srv.appendLog(5, 0, "stdout", "step 2\n", false)
	srv.awaitWaiting("/v1/jobs/5/logs")
	srv.appendLog(5, 0, "stdout", "done\n", true)
	if res := <-done; res != (cliResult{stdout: "step 1\nstep 2\ndone\n"}) {
		t.Errorf("got %+v", res)
	}
}

func TestWaitRidesOutALeaderElection(t *testing.T) {
	srv := newFakeServer(t)
	srv.addJob(pendingJob(1))
	srv.failWatches = 2 // the next two blocking reads answer 503
	srv.onSubmit = nil
	done := make(chan cliResult)
	go func() { done <- runCLI(t, srv.srv.URL, "", "wait", "1") }()
	srv.awaitWaiting("/v1/jobs/1") // a watch got through after the 503s
	srv.update(1, finish("succeeded", 0, api.Reason{}))
	if res := <-done; res != (cliResult{stdout: "1 succeeded (exit 0)\n"}) {
		t.Errorf("got %+v", res)
	}
	if srv.failWatches != 0 {
		t.Errorf("%d 503s left unanswered; want the CLI to have retried through both", srv.failWatches)
	}
}

func TestWaitFailsAtOnceWhenTheServerNeverAnswered(t *testing.T) {
	res := runCLI(t, "http://127.0.0.1:1", "", "wait", "1")
	if res.code != 1 || !strings.Contains(res.stderr, "cannot reach the dure server") {
		t.Errorf("got %+v; want exit 1 with advice", res)
	}
}

// A malformed server address says where it came from and what is wanted,
// not Go's URL parser's words about a URL the user never wrote.
func TestBadServerAddressNamesTheSetting(t *testing.T) {
	res := runCLI(t, "bogus::", "", "jobs")
	want := "dure: invalid server address (from --addr or DURE_ADDR): invalid port \"::\" after host; want host:port or http://host:port\n"
	if res.code != 1 || res.stderr != want {
		t.Errorf("got %+v; want exit 1 and %q", res, want)
	}
}

// TestNoExitCodeShowsTheReason: a job whose task ended without an exit
// status (-1: its supervisor died) shows its reason in `dure jobs` and
// "none" where an exit code would go, never "-1".
func TestNoExitCodeShowsTheReason(t *testing.T) {
	lost := api.Job{ID: 7, State: "failed", ExitCode: -1, Reason: api.Reason{Code: "TaskFailed", Message: "task 0 on n1 ended without an exit status (lost)"}}
	if got := reasonOrExit(&lost); got != "TaskFailed" {
		t.Errorf("REASON/EXIT column = %q, want TaskFailed", got)
	}
	if got := allocExit(&api.Allocation{Status: "exited", ExitCode: -1}); got != "none" {
		t.Errorf("allocation exit = %q, want none", got)
	}
	if got := reasonOrExit(&api.Job{ID: 8, State: "failed", ExitCode: 3}); got != "exit 3" {
		t.Errorf("REASON/EXIT column of an exit 3 = %q", got)
	}
}
