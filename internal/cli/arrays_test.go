package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/api"
)

// cannedArray is array 20 (indices 0-9, at most 3 at once) mid-run, newest
// (highest ID) first as GET /v1/jobs lists it: 0-4 succeeded but 2 failed,
// 5-7 run, 8-9 wait for the throttle.
func cannedArray() []api.Job {
	var out []api.Job
	for i := 9; i >= 0; i-- {
		j := api.Job{ID: uint64(20 + i), Name: "sweep", Owner: "alice", Queue: "default", Tasks: 1,
			Groups: []api.TaskGroupSpec{{Name: "main", Count: 1, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"x"}}},
			Array:  &api.ArrayInfo{JobID: 20, TaskID: i, Throttle: 3}, SubmitTime: t0.Add(-10 * time.Minute)}
		switch {
		case i >= 8:
			j.State, j.Reason = "pending", api.Reason{Code: "ArrayThrottle", Message: "array 20 runs 3 elements at once, its limit (%3)"}
		case i >= 5:
			j.State, j.StartTime = "running", t0.Add(-time.Duration(i)*time.Minute)
		case i == 2:
			j.State, j.ExitCode, j.StartTime, j.EndTime = "failed", 3, t0.Add(-9*time.Minute), t0.Add(-8*time.Minute)
		default:
			j.State, j.StartTime, j.EndTime = "succeeded", t0.Add(-9*time.Minute), t0.Add(-8*time.Minute)
		}
		out = append(out, j)
	}
	return out
}

func TestRenderJobsCompactsArrays(t *testing.T) {
	jobs := append([]api.Job{cannedJobs()[1]}, cannedArray()...) // job 14 is listed first, as if newer
	jobs = append(jobs, cannedJobs()[5])
	var b bytes.Buffer
	renderJobs(&b, jobs, t0, false)
	want := `ID            NAME   USER   QUEUE    STATE      TASKS  TIME   REASON/EXIT
14            etl    bob    default  running    1      1h5m   -
20_[0-1,3-4]  sweep  alice  default  succeeded  1      -      exit 0
20_2          sweep  alice  default  failed     1      1m     exit 3
20_5          sweep  alice  default  running    1      5m     -
20_6          sweep  alice  default  running    1      6m     -
20_7          sweep  alice  default  running    1      7m     -
20_[8-9%3]    sweep  alice  default  pending    1      10m    ArrayThrottle
10            hello  alice  default  succeeded  1      450ms  exit 0
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderArray(t *testing.T) {
	elems := cannedArray()
	// ?array= lists elements in index order
	for i, j := 0, len(elems)-1; i < j; i, j = i+1, j-1 {
		elems[i], elems[j] = elems[j], elems[i]
	}
	var b bytes.Buffer
	renderArray(&b, 20, elems, t0)
	got := b.String()
	for _, want := range []string{
		"Array 20: sweep, 10 element(s) (0-9), at most 3 running at once\n",
		"States: 3 running, 2 pending, 4 succeeded, 1 failed\n",
		"Show one element with: dure job 20_0\n",
		"20_2  sweep  alice  default  failed     1      1m    exit 3\n",
		"20_9  sweep  alice  default  pending    1      10m   ArrayThrottle\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("array view lacks %q:\n%s", want, got)
		}
	}
	if line := arrayOutcome(20, elems); line != "20 array (10 elements): 3 running, 2 pending, 4 succeeded, 1 failed (first not succeeded: 20_2 exit 3)" {
		t.Errorf("arrayOutcome = %q", line)
	}
}

func TestRenderJobShowsArrayDependenciesAndGang(t *testing.T) {
	j := cannedArray()[3] // 20_6, running
	j.Tasks, j.StartedTasks, j.MinTasks, j.Topology, j.Placement = 4, 2, 2, "rack", "spread"
	j.Groups[0].Count = 4
	j.Dependencies = []api.Dependency{{Type: "afterok", JobID: 12}, {Type: "afterany", JobID: 15, Array: true}}
	var b bytes.Buffer
	renderJob(&b, &j, t0, time.UTC)
	for _, want := range []string{
		"Array:       20_6: element 6 of array 20, at most 3 running at once\n",
		"Tasks:       4 (2 started)\n",
		"Placement:   starts with at least 2 of 4 tasks; all tasks in one rack; spread\n",
		"Depends on:  afterok:12, afterany:15 (whole array)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("detail lacks %q:\n%s", want, b.String())
		}
	}
	var rows bytes.Buffer
	renderJobList(&rows, []api.Job{j}, t0, false)
	if !strings.Contains(rows.String(), "20_6  sweep  alice  default  running  2/4") {
		t.Errorf("a gang running with 2 of 4 tasks should show 2/4:\n%s", rows.String())
	}
}

func TestCancelArraySaysSo(t *testing.T) {
	srv := newFakeServer(t)
	for _, j := range cannedArray() {
		if j.ID == 20 {
			j.State = "pending" // the double cancels one job: let it be the array's first
		}
		srv.addJob(j)
	}
	res := runCLI(t, srv.srv.URL, "", "cancel", "20", "20_9")
	if res.code != 0 || res.stdout != "cancelled array 20\ncancelled 20_9\n" {
		t.Errorf("got %+v; want the array and the element named as given", res)
	}
}
