package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/durehq/dure/internal/api"
)

// runAndFinish starts job id's process latency after its submission and
// ends it with the given state.
func runAndFinish(srv *fakeServer, id uint64, latency time.Duration, state string, exit int) {
	srv.update(id, func(j *api.Job) {
		j.State, j.ExitCode, j.StartTime, j.EndTime = state, exit, j.SubmitTime.Add(latency), j.SubmitTime.Add(latency+time.Millisecond)
		j.Allocations = []api.Allocation{{ID: fmt.Sprintf("%d.0.1", id), JobID: id, Node: "n1", Status: "exited", ExitCode: exit,
			StartedAt: j.SubmitTime.Add(latency), FinishedAt: j.SubmitTime.Add(latency + time.Millisecond)}}
	})
}

func TestBenchDispatchReportsLatencyPercentiles(t *testing.T) {
	srv := newFakeServer(t)
	// Job i starts i ms after submission: latencies 1…20 ms.
	srv.onSubmit = func(id uint64) { runAndFinish(srv, id, time.Duration(id)*time.Millisecond, "succeeded", 0) }
	res := runCLI(t, srv.srv.URL, "", "bench", "dispatch", "--jobs", "20", "--concurrency", "4", "-o", "json")
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("got %+v", res)
	}
	var got benchResult
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, res.stdout)
	}
	want := benchResult{Mode: "throughput", Jobs: 20, Concurrency: 4, Batch: 1, LatencyMS: latencyMS{P50: 10, P90: 18, P99: 20, Max: 20}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(benchResult{}, "SubmitPerS", "E2EJobsPerS", "SubmitS", "E2ES")); diff != "" {
		t.Errorf("bench result (-want +got):\n%s", diff)
	}
	if got.SubmitPerS <= 0 || got.E2EJobsPerS <= 0 || got.E2ES < got.SubmitS {
		t.Errorf("throughputs %v/s submit, %v/s end-to-end over %vs/%vs: want positive rates and e2e ≥ submit time", got.SubmitPerS, got.E2EJobsPerS, got.SubmitS, got.E2ES)
	}
	for _, key := range []string{`"jobs"`, `"submit_per_s"`, `"e2e_jobs_per_s"`, `"latency_ms"`, `"p50"`, `"p90"`, `"p99"`, `"max"`, `"failed"`} {
		if !strings.Contains(res.stdout, key) {
			t.Errorf("JSON lacks key %s:\n%s", key, res.stdout)
		}
	}
	specs := srv.submitted()
	if len(specs) != 20 || cmp.Diff([]string{"true"}, specs[0].Groups[0].Command) != "" || specs[0].Groups[0].Resources.MilliCPU != 100 {
		t.Errorf("submitted %d jobs, first %+v; want 20 jobs running `true` with 100m CPU", len(specs), specs[0])
	}
}

func TestBenchDispatchCountsFailures(t *testing.T) {
	srv := newFakeServer(t)
	srv.onSubmit = func(id uint64) {
		if id%5 == 0 {
			runAndFinish(srv, id, time.Millisecond, "failed", 1)
			return
		}
		runAndFinish(srv, id, time.Millisecond, "succeeded", 0)
	}
	res := runCLI(t, srv.srv.URL, "", "bench", "dispatch", "--jobs", "20", "--cmd", "sh -c true")
	if res.code != 1 || !strings.HasPrefix(res.stderr, "dure: bench: 4 of 20 jobs failed; first: job ") ||
		!strings.Contains(res.stderr, " failed (exit 1)\n") {
		t.Errorf("got %+v; want exit 1 and the failures counted on stderr", res)
	}
	if !strings.Contains(res.stdout, "failed        4\n") {
		t.Errorf("report lacks the failure count:\n%s", res.stdout)
	}
	if got := srv.submitted()[0].Groups[0].Command; cmp.Diff([]string{"sh", "-c", "true"}, got) != "" {
		t.Errorf("command %q, want --cmd split on spaces", got)
	}
}

func TestBenchDispatchIdleSubmitsOneAtATime(t *testing.T) {
	srv := newFakeServer(t)
	const n = 5
	done := make(chan cliResult)
	go func() {
		done <- runCLI(t, srv.srv.URL, "", "bench", "dispatch", "--idle", "--jobs", fmt.Sprint(n), "-o", "json")
	}()
	for id := uint64(1); id <= n; id++ {
		srv.awaitWaiting(fmt.Sprintf("/v1/jobs/%d", id)) // the bench waits for job id to start…
		if got := len(srv.submitted()); got != int(id) {
			t.Fatalf("%d jobs submitted while job %d had not started; want %d", got, id, id)
		}
		runAndFinish(srv, id, time.Duration(id)*time.Millisecond, "succeeded", 0) // …so start it
	}
	res := <-done
	var got benchResult
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || res.code != 0 {
		t.Fatalf("got %+v (%v)", res, err)
	}
	want := benchResult{Mode: "idle", Jobs: n, Concurrency: 1, Batch: 1, LatencyMS: latencyMS{P50: 3, P90: 5, P99: 5, Max: 5}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(benchResult{}, "SubmitPerS", "E2EJobsPerS", "SubmitS", "E2ES")); diff != "" {
		t.Errorf("bench result (-want +got):\n%s", diff)
	}
}

func TestBenchDispatchInBatches(t *testing.T) {
	srv := newFakeServer(t)
	srv.onSubmit = func(id uint64) { runAndFinish(srv, id, time.Millisecond, "succeeded", 0) }
	res := runCLI(t, srv.srv.URL, "", "bench", "dispatch", "--jobs", "25", "--concurrency", "2", "--batch", "10", "-o", "json")
	var got benchResult
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || res.code != 0 {
		t.Fatalf("got %+v (%v)", res, err)
	}
	if got.Jobs != 25 || got.Batch != 10 || got.Failed != 0 || got.LatencyMS.P50 != 1 {
		t.Errorf("result %+v; want 25 jobs in batches of 10, none failed, 1ms latency", got)
	}
	srv.mu.Lock()
	batches := append([]int(nil), srv.batches...)
	srv.mu.Unlock()
	slices.Sort(batches)
	if diff := cmp.Diff([]int{5, 10, 10}, batches); diff != "" {
		t.Errorf("batch sizes sent (-want +got):\n%s", diff)
	}
	if n := len(srv.submitted()); n != 25 {
		t.Errorf("%d jobs submitted; want 25", n)
	}
}

// With --rate the jobs are offered on a schedule: the request holding job i
// goes no sooner than i/rate after the start, however fast the server is.
func TestBenchDispatchOffersJobsAtTheRate(t *testing.T) {
	srv := newFakeServer(t)
	var mu sync.Mutex
	var arrived []time.Time
	srv.onSubmit = func(id uint64) {
		mu.Lock()
		arrived = append(arrived, time.Now())
		mu.Unlock()
		runAndFinish(srv, id, time.Millisecond, "succeeded", 0)
	}
	before := time.Now()
	res := runCLI(t, srv.srv.URL, "", "bench", "dispatch", "--jobs", "10", "--concurrency", "4", "--batch", "2", "--rate", "100", "-o", "json")
	var got benchResult
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || res.code != 0 {
		t.Fatalf("got %+v (%v)", res, err)
	}
	if got.Rate != 100 || got.Jobs != 10 || got.Failed != 0 {
		t.Errorf("result %+v; want 10 jobs offered at 100/s, none failed", got)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(arrived, func(a, b time.Time) int { return a.Compare(b) })
	// Jobs 8–9 are due 90 ms after the bench started (at once without
	// --rate).
	if len(arrived) != 10 {
		t.Fatalf("%d jobs arrived; want 10", len(arrived))
	}
	if after := arrived[9].Sub(before); after < 90*time.Millisecond {
		t.Errorf("the last batch arrived %v after the start; want at least 90ms at 100 jobs/s", after)
	}
	var b bytes.Buffer
	renderBench(&b, got)
	if !strings.Contains(b.String(), "jobs          10 (concurrency 4, 2 per request, offered at 100/s)\n") {
		t.Errorf("report does not say the offered rate:\n%s", b.String())
	}
}

// The bench is done only when every job is: it polls for active jobs of
// its user and reads each job once at the end.
func TestBenchDispatchWaitsForEveryJob(t *testing.T) {
	srv := newFakeServer(t)
	srv.onSubmit = func(id uint64) {
		if id != 3 {
			runAndFinish(srv, id, time.Millisecond, "succeeded", 0)
		}
	}
	done := make(chan cliResult)
	go func() { done <- runCLI(t, srv.srv.URL, "", "bench", "dispatch", "--jobs", "5", "-o", "json") }()
	polls := func() int {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		n := 0
		for _, q := range srv.listReqs {
			if strings.Contains(q, "state=active") && strings.Contains(q, "owner=alice") {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for polls() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the bench does not poll for its active jobs")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case res := <-done:
		t.Fatalf("the bench finished while job 3 was still pending: %+v", res)
	default:
	}
	runAndFinish(srv, 3, 2*time.Millisecond, "succeeded", 0)
	res := <-done
	var got benchResult
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || res.code != 0 || got.Failed != 0 || got.LatencyMS.Max != 2 {
		t.Errorf("got %+v (%v): want all 5 jobs succeeded, the slowest started after 2ms", res, err)
	}
}

// Another active job of the same user cannot be told apart by the poll:
// the bench then waits for its own jobs one by one, not for that job.
func TestBenchDispatchWithOtherActiveJobs(t *testing.T) {
	srv := newFakeServer(t)
	srv.mu.Lock()
	other, _ := srv.addLocked(api.JobSpec{Name: "long", Owner: "alice"})
	srv.mu.Unlock()
	srv.onSubmit = func(id uint64) { runAndFinish(srv, id, time.Millisecond, "succeeded", 0) }
	res := runCLI(t, srv.srv.URL, "", "bench", "dispatch", "--jobs", "4", "-o", "json")
	var got benchResult
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || res.code != 0 || got.Failed != 0 || got.Jobs != 4 {
		t.Errorf("got %+v (%v); want 4 jobs succeeded", res, err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if st := srv.jobs[other].State; st != "pending" {
		t.Errorf("the other job is %s; the bench must leave it alone", st)
	}
}

func TestRenderBench(t *testing.T) {
	var b bytes.Buffer
	renderBench(&b, benchResult{Mode: "throughput", Jobs: 1000, Concurrency: 8, SubmitPerS: 812.345, E2EJobsPerS: 401.5,
		SubmitS: 1.231, E2ES: 2.49, LatencyMS: latencyMS{P50: 12.3, P90: 30.12, P99: 45, Max: 1234.5}})
	want := `mode          throughput
jobs          1000 (concurrency 8)
failed        0
submit        812.3 jobs/s (1000 in 1.23s)
end-to-end    401.5 jobs/s (1000 in 2.49s)
submit→start  p50 12.3ms  p90 30.1ms  p99 45.0ms  max 1.23s
`
	if got := b.String(); got != want {
		t.Errorf("report:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderBenchSaysBatches(t *testing.T) {
	var b bytes.Buffer
	renderBench(&b, benchResult{Mode: "throughput", Jobs: 10000, Concurrency: 4, Batch: 100})
	if !strings.Contains(b.String(), "jobs          10000 (concurrency 4, 100 per request)\n") {
		t.Errorf("report does not say the jobs went in batches:\n%s", b.String())
	}
}

func TestBenchDispatchBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--jobs", "0"}, "dure: --jobs: must be at least 1 (got 0)\n"},
		{[]string{"--concurrency", "0"}, "dure: --concurrency: must be at least 1 (got 0)\n"},
		{[]string{"--cmd", " "}, "dure: --cmd: must name a command (got \" \")\n"},
		{[]string{"--batch", "0"}, "dure: --batch: must be 1 to 1000 (got 0)\n"},
		{[]string{"--batch", "1001"}, "dure: --batch: must be 1 to 1000 (got 1001)\n"},
		{[]string{"--idle", "--batch", "2"}, "dure: --batch: --idle submits one job at a time (got --batch 2)\n"},
		{[]string{"--rate", "-5"}, "dure: --rate: must be a number of jobs per second, 0 or more (got -5)\n"},
		{[]string{"--rate", "NaN"}, "dure: --rate: must be a number of jobs per second, 0 or more (got NaN)\n"},
		{[]string{"--idle", "--rate", "10"}, "dure: --rate: --idle submits each job when the one before has started (got --rate 10)\n"},
	}
	for _, tt := range tests {
		res := runCLI(t, "http://127.0.0.1:1", "", append([]string{"bench", "dispatch"}, tt.args...)...)
		if res != (cliResult{stderr: tt.want, code: 1}) {
			t.Errorf("bench dispatch %q: got %+v, want stderr %q", tt.args, res, tt.want)
		}
	}
}

// TestBenchDispatchCountsPrunedJobs: a run longer than the server keeps
// finished jobs finds some gone when it reads them. They finished, so the
// run completes, says how many it could not read, and takes the latency
// from the rest.
func TestBenchDispatchCountsPrunedJobs(t *testing.T) {
	srv := newFakeServer(t)
	srv.onSubmit = func(id uint64) {
		runAndFinish(srv, id, time.Duration(id)*time.Millisecond, "succeeded", 0)
		if id <= 5 {
			srv.mu.Lock()
			delete(srv.jobs, id)
			srv.mu.Unlock()
		}
	}
	res := runCLI(t, srv.srv.URL, "", "bench", "dispatch", "--jobs", "20", "-o", "json")
	if res.code != 0 || !strings.Contains(res.stderr, "dure: bench: 5 jobs finished but the server pruned them") {
		t.Fatalf("got %+v; want success and the pruned jobs named on stderr", res)
	}
	var got benchResult
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, res.stdout)
	}
	if got.Pruned != 5 || got.Failed != 0 || got.LatencyMS.P50 != 13 || got.LatencyMS.Max != 20 {
		t.Errorf("pruned %d, failed %d, latency %+v; want 5 pruned, none failed, latencies of jobs 6-20 only", got.Pruned, got.Failed, got.LatencyMS)
	}
	var human bytes.Buffer
	renderBench(&human, got)
	if !strings.Contains(human.String(), "pruned        5 (finished; outcome and latency unknown)\n") {
		t.Errorf("the table does not show the pruned jobs:\n%s", human.String())
	}
}
