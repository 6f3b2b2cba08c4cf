package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

// cannedJobs is one job in every state, newest first, as GET /v1/jobs lists them.
func cannedJobs() []api.Job {
	g := func(n int, cpu, mem, gpus int64, cmd ...string) []api.TaskGroupSpec {
		return []api.TaskGroupSpec{{Name: "main", Count: n, Resources: api.Resources{MilliCPU: cpu, MemoryBytes: mem, GPUs: gpus}, Command: cmd}}
	}
	return []api.Job{
		{ID: 15, Name: "train-resnet50-imagenet-full-run", Owner: "alice", Queue: "gpu", Priority: 10, Groups: g(4, 8000, 32<<30, 2, "python", "train.py"), Tasks: 4,
			State: "pending", Reason: api.Reason{Code: "Resources", Message: "needs 2 GPUs per task; best node has 1 free"}, SubmitTime: t0.Add(-3*time.Minute - 12*time.Second)},
		{ID: 14, Name: "etl", Owner: "bob", Queue: "default", Groups: g(1, 1000, 512<<20, 0, "etl.sh"), Tasks: 1,
			State: "running", SubmitTime: t0.Add(-2 * time.Hour), StartTime: t0.Add(-1*time.Hour - 5*time.Minute)},
		{ID: 13, Name: "sim", Owner: "alice", Queue: "default", Groups: g(2, 500, 1<<30, 0, "sim"), Tasks: 2,
			State: "failed", ExitCode: 3, Reason: api.Reason{Code: "TaskFailed", Message: "task 1 exited 3"},
			SubmitTime: t0.Add(-time.Hour), StartTime: t0.Add(-59 * time.Minute), EndTime: t0.Add(-58*time.Minute - 30*time.Second)},
		{ID: 12, Name: "lost", Owner: "carol", Queue: "default", Groups: g(1, 1000, 0, 0, "x"), Tasks: 1,
			State: "failed", Reason: api.Reason{Code: "NodeLost", Message: "node n3 went down"},
			SubmitTime: t0.Add(-time.Hour), StartTime: t0.Add(-time.Hour), EndTime: t0.Add(-50 * time.Minute)},
		{ID: 11, Name: "oops", Owner: "alice", Queue: "default", Groups: g(1, 1000, 0, 0, "x"), Tasks: 1,
			State: "cancelled", Reason: api.Reason{Code: "Cancelled", Message: "cancelled by alice"},
			SubmitTime: t0.Add(-26 * time.Hour), EndTime: t0.Add(-25 * time.Hour)},
		{ID: 10, Name: "hello", Owner: "alice", Queue: "default", Groups: g(1, 1000, 0, 0, "echo", "hi"), Tasks: 1,
			State: "succeeded", SubmitTime: t0.Add(-26 * time.Hour), StartTime: t0.Add(-26 * time.Hour), EndTime: t0.Add(-26*time.Hour + 450*time.Millisecond)},
	}
}

func TestRenderJobs(t *testing.T) {
	var b bytes.Buffer
	renderJobs(&b, cannedJobs(), t0, false)
	want := `ID  NAME                      USER   QUEUE    STATE      TASKS  TIME   REASON/EXIT
15  train-resnet50-imagenet…  alice  gpu      pending    4      3m12s  Resources
14  etl                       bob    default  running    1      1h5m   -
13  sim                       alice  default  failed     2      30s    exit 3
12  lost                      carol  default  failed     1      10m    NodeLost
11  oops                      alice  default  cancelled  1      -      Cancelled
10  hello                     alice  default  succeeded  1      450ms  exit 0
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderJobsWide(t *testing.T) {
	var b bytes.Buffer
	renderJobs(&b, cannedJobs()[:2], t0, true)
	want := `ID  NAME                      USER   QUEUE    STATE    TASKS  TIME   REASON/EXIT  PRIO  CPU  MEM     GPU  SUBMITTED  MESSAGE
15  train-resnet50-imagenet…  alice  gpu      pending  4      3m12s  Resources    10    32   128GiB  8    3m12s ago  needs 2 GPUs per task; best node has 1 free
14  etl                       bob    default  running  1      1h5m   -            0     1    512MiB  0    2h ago     -
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// cannedDetail is a failed two-task job as GET /v1/jobs/{id} returns it.
func cannedDetail() api.Job {
	j := cannedJobs()[2]
	j.Walltime = api.Duration(2 * time.Hour)
	j.MaxRetries = 1
	j.Attempt = 1
	j.Groups[0].Constraints = map[string]string{"pool": "cpu"}
	j.Groups[0].Command = []string{"sim", "--steps", "1 000"}
	j.Allocations = []api.Allocation{
		{ID: "13.0.1", JobID: 13, TaskIndex: 0, Attempt: 1, Node: "n1", Status: "exited", ExitCode: 0, StartedAt: t0.Add(-59 * time.Minute), FinishedAt: t0.Add(-58 * time.Minute)},
		{ID: "13.1.1", JobID: 13, TaskIndex: 1, Attempt: 1, Node: "n2", Status: "exited", ExitCode: 3, GPUIndices: []int{0, 1}, StartedAt: t0.Add(-59 * time.Minute), FinishedAt: t0.Add(-58*time.Minute - 30*time.Second), Message: "exited with status 3"},
	}
	j.Events = []api.Event{
		{Time: t0.Add(-time.Hour), Type: "submitted", Message: "submitted by alice to queue default"},
		{Time: t0.Add(-59 * time.Minute), Type: "started", Message: "placed 2 tasks on n1, n2"},
		{Time: t0.Add(-58*time.Minute - 30*time.Second), Type: "failed", Message: "task 1 exited 3"},
	}
	return j
}

func TestRenderJob(t *testing.T) {
	var b bytes.Buffer
	j := cannedDetail()
	renderJob(&b, &j, t0, time.UTC)
	want := `ID:         13
Name:       sim
Owner:      alice
Queue:      default
Priority:   0
State:      failed
Reason:     TaskFailed: task 1 exited 3
Exit code:  3
Tasks:      2
Walltime:   2h
Attempt:    1 (retries allowed: 1)
Submitted:  2025-03-01 13:00:00 (1h ago)
Started:    2025-03-01 13:01:00 (waited 1m)
Ended:      2025-03-01 13:01:30 (ran 30s)

Task groups (resources per task):
  GROUP  TASKS  CPU   MEM   GPU  CONSTRAINTS  COMMAND
  main   2      500m  1GiB  0    pool=cpu     sim --steps "1 000"

Allocations:
  ALLOC   NODE  STATUS  EXIT  GPUS  STARTED              MESSAGE
  13.0.1  n1    exited  0     -     2025-03-01 13:01:00  -
  13.1.1  n2    exited  3     0,1   2025-03-01 13:01:00  exited with status 3

Events:
  TIME                 TYPE       MESSAGE
  2025-03-01 13:00:00  submitted  submitted by alice to queue default
  2025-03-01 13:01:00  started    placed 2 tasks on n1, n2
  2025-03-01 13:01:30  failed     task 1 exited 3
`
	if got := b.String(); got != want {
		t.Errorf("detail:\n%s\nwant:\n%s", got, want)
	}
}

func TestJobsVerbPassesFiltersAndLimit(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantQuery string
		wantIDs   string // the ID column, top to bottom
	}{
		{"default: newest 100 of everyone", nil, "limit=100", "15 14 13 12 11 10"},
		{"active of one user", []string{"--state", "active", "--user", "alice"}, "limit=100&owner=alice&state=active", "15"},
		{"queue and limit", []string{"--queue", "default", "--limit", "2"}, "limit=2&queue=default", "14 13"},
		{"all drops the limit", []string{"--all", "--state", "failed"}, "state=failed", "13 12"},
		{"finished, as the API has it", []string{"--state", "finished"}, "limit=100&state=finished", "13 12 11 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			for _, j := range cannedJobs() {
				srv.addJob(j)
			}
			res := runCLI(t, srv.srv.URL, "", append([]string{"jobs"}, tt.args...)...)
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("got %+v", res)
			}
			if got := srv.listReqs; len(got) != 1 || got[0] != tt.wantQuery {
				t.Errorf("queries %q, want [%q]", got, tt.wantQuery)
			}
			var ids []string
			for _, line := range strings.Split(strings.TrimSpace(res.stdout), "\n")[1:] {
				ids = append(ids, strings.Fields(line)[0])
			}
			if got := strings.Join(ids, " "); got != tt.wantIDs {
				t.Errorf("listed %q, want %q\n%s", got, tt.wantIDs, res.stdout)
			}
		})
	}
}

func TestJobsJSONIsTheAPIList(t *testing.T) {
	srv := newFakeServer(t)
	for _, j := range cannedJobs() {
		srv.addJob(j)
	}
	res := runCLI(t, srv.srv.URL, "", "jobs", "-o", "json")
	var got []api.Job
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || res.code != 0 {
		t.Fatalf("code %d, not JSON (%v):\n%s", res.code, err, res.stdout)
	}
	if diff := cmp.Diff(cannedJobs(), got); diff != "" {
		t.Errorf("jobs -o json (-want +got):\n%s", diff)
	}
}

func TestJobsEmpty(t *testing.T) {
	srv := newFakeServer(t)
	if res := runCLI(t, srv.srv.URL, "", "jobs"); res != (cliResult{stderr: "no jobs\n"}) {
		t.Errorf("table: got %+v, want only 'no jobs' on stderr", res)
	}
	if res := runCLI(t, srv.srv.URL, "", "jobs", "-o", "json"); res != (cliResult{stdout: "[]\n"}) {
		t.Errorf("json: got %+v, want []", res)
	}
}

func TestJobsBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--state", "done"}, "dure: --state: must be one of pending, running, succeeded, failed, cancelled, active, finished (got \"done\")\n"},
		{[]string{"-o", "yaml"}, "dure: --output: must be one of table, wide, json (got \"yaml\")\n"},
		{[]string{"--limit", "0"}, "dure: --limit: must be at least 1 (got 0); use --all for every job\n"},
		{[]string{"extra"}, "dure: unknown command \"extra\" for \"dure jobs\"\nRun 'dure jobs --help' for usage.\n"},
	}
	for _, tt := range tests {
		res := runCLI(t, "http://127.0.0.1:1", "", append([]string{"jobs"}, tt.args...)...)
		if res != (cliResult{stderr: tt.want, code: 1}) {
			t.Errorf("dure jobs %q: got %+v, want stderr %q", tt.args, res, tt.want)
		}
	}
}

func TestJobVerb(t *testing.T) {
	srv := newFakeServer(t)
	srv.addJob(cannedDetail())

	res := runCLI(t, srv.srv.URL, "", "job", "13")
	var want bytes.Buffer
	j := cannedDetail()
	renderJob(&want, &j, t0, time.UTC)
	if res.code != 0 || res.stdout != want.String() {
		t.Errorf("dure job 13: got %+v", res)
	}

	res = runCLI(t, srv.srv.URL, "", "job", "13", "-o", "json")
	var got api.Job
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, res.stdout)
	}
	if diff := cmp.Diff(cannedDetail(), got); diff != "" {
		t.Errorf("job -o json (-want +got):\n%s", diff)
	}

	if res := runCLI(t, srv.srv.URL, "", "job", "99"); res != (cliResult{stderr: "dure: job 99 not found\n", code: 1}) {
		t.Errorf("unknown job: got %+v", res)
	}
	if res := runCLI(t, srv.srv.URL, "", "job", "x1"); res != (cliResult{stderr: "dure: invalid job ID \"x1\": want a positive number like 12, or an array element like 12_3\n", code: 1}) {
		t.Errorf("bad ID: got %+v", res)
	}
}

func TestRenderJobPendingAndRunningTimes(t *testing.T) {
	tests := []struct {
		name string
		job  api.Job
		want []string
	}{
		{"pending shows how long it has waited", cannedJobs()[0], []string{
			"Reason:     Resources: needs 2 GPUs per task; best node has 1 free\n",
			"Started:    - (waiting 3m12s)\n", "Ended:      -\n", "Walltime:   none\n", "Allocations:\n  none\n", "Events:\n  none\n"}},
		{"running shows how long it has run", cannedJobs()[1], []string{
			"Started:    2025-03-01 12:55:00 (waited 55m)\n", "Ended:      - (running 1h5m)\n"}},
		{"cancelled before it started", cannedJobs()[4], []string{
			"Exit code:  0\n", "Started:    -\n", "Ended:      2025-02-28 13:00:00\n",
			"  main   1      1    -    0    -            x\n"}}, // no memory asked for: "-", not "0B"
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			renderJob(&b, &tt.job, t0, time.UTC)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("detail lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestRenderJobBeingPreempted(t *testing.T) {
	j := cannedDetail()
	j.State, j.ExitCode, j.EndTime, j.Attempt, j.Preemptions, j.PreemptedBy = "running", 0, time.Time{}, 2, 1, 20
	j.Reason = api.Reason{Code: "Preempted", Message: "preempted by job 20 of higher priority (5 > 0) in queue default"}
	var b bytes.Buffer
	renderJob(&b, &j, t0, time.UTC)
	for _, line := range []string{
		"Reason:     Preempted: preempted by job 20 of higher priority (5 > 0) in queue default\n",
		"Attempt:    2 (retries allowed: 1; preempted 1 time(s), which use none)\n",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("detail lacks %q:\n%s", line, b.String())
		}
	}
	b.Reset()
	renderJobs(&b, []api.Job{j}, t0, false)
	if !strings.Contains(b.String(), "running  2      59m   Preempted") {
		t.Errorf("jobs table does not say the running job is being preempted:\n%s", b.String())
	}
}

// A job that set no walltime is held to its queue's default, and says so.
func TestJobShowsTheQueueDefaultWalltime(t *testing.T) {
	srv := newFakeServer(t)
	srv.queues = []api.Queue{{QueueSpec: api.QueueSpec{Name: "vision", DefaultWalltime: api.Duration(2 * time.Hour)}}}
	srv.addJob(api.Job{ID: 5, Name: "train", Owner: "alice", Queue: "vision", State: "running", SubmitTime: t0.Add(-time.Minute)})
	srv.addJob(api.Job{ID: 6, Name: "eval", Owner: "alice", Queue: "default", State: "running", SubmitTime: t0.Add(-time.Minute)})
	res := runCLI(t, srv.srv.URL, "", "job", "5")
	if want := "Walltime:   2h (queue vision's default: the job set none)\n"; res.code != 0 || !strings.Contains(res.stdout, want) {
		t.Errorf("dure job 5: %+v\nwant a line %q", res, want)
	}
	res = runCLI(t, srv.srv.URL, "", "job", "6")
	if want := "Walltime:   none\n"; res.code != 0 || !strings.Contains(res.stdout, want) {
		t.Errorf("dure job 6 (a queue without a default): %+v\nwant a line %q", res, want)
	}
}
