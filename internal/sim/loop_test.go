package sim

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
)

// tinySWF is five jobs on a 4-processor machine, small enough to schedule
// by hand (fields: job, submit, wait, run, procs, …, requested time in 9).
//
//	job  submit  procs  walltime  runtime
//	1    0       2      10        10
//	2    1       4      10        5
//	3    2       2      5         5
//	4    3       1      20        20
//	5    4       2      3         2
const tinySWF = `; MaxProcs: 4
1 0 -1 10 2 -1 -1 2 10 -1 1 1 1 -1 -1 -1 -1 -1
2 1 -1  5 4 -1 -1 4 10 -1 1 2 2 -1 -1 -1 -1 -1
3 2 -1  5 2 -1 -1 2  5 -1 1 3 3 -1 -1 -1 -1 -1
4 3 -1 20 1 -1 -1 1 20 -1 1 4 4 -1 -1 -1 -1 -1
5 4 -1  2 2 -1 -1 2  3 -1 1 5 5 -1 -1 -1 -1 -1
`

// The expected waits, worked out by hand from the textbook definitions.
//
// FIFO: 1 starts at 0 (2 free). 2 needs all 4 and blocks the queue until 1
// ends at 10; 2 runs 10–15. At 15, 3 (2 procs) and 4 (1) start, 5 (2) does
// not fit until 3 ends at 20. Waits: 0, 9, 13, 12, 16.
//
// EASY: 2 is blocked at 1 and reserved for 10 (when 1's walltime ends),
// with no extra processors. 3 fits at 2 and ends by 2+5 = 7 ≤ 10: it
// backfills. At 7 (3 ended) 5 fits and ends by 7+3 = 10 ≤ 10: it
// backfills; 4 (ends by 27, and no extra processors) does not. 2 starts at
// 10, 4 when 2 ends at 15. Waits: 0, 9, 0, 12, 3.
//
// Conservative: the same here: 4's reservation (20, after 2's walltime)
// never lets it start earlier than 15, and 5's (7) is where EASY put it.
var tinyWaits = map[sched.Policy][]time.Duration{
	sched.PolicyFIFO:         secsList(0, 9, 13, 12, 16),
	sched.PolicyEASY:         secsList(0, 9, 0, 12, 3),
	sched.PolicyConservative: secsList(0, 9, 0, 12, 3),
}

func secsList(ss ...int) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = time.Duration(s) * time.Second
	}
	return out
}

func readTiny(t *testing.T) *Trace {
	t.Helper()
	tr, err := ReadSWF(strings.NewReader(tinySWF), "tiny.swf")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func waitsByID(res *Result) []time.Duration {
	out := make([]time.Duration, len(res.Jobs))
	for _, r := range res.Jobs {
		out[r.ID-1] = r.Wait()
	}
	return out
}

func TestTextbookPoliciesStartJobsWhenTheDefinitionsSay(t *testing.T) {
	clusters := map[string]string{
		"one 4-cpu node (jobs are one task)":        "",
		"four 1-cpu nodes (jobs are k 1-cpu tasks)": "4x1cpu",
	}
	for policy, want := range tinyWaits {
		for cname, spec := range clusters {
			t.Run(fmt.Sprintf("%s on %s", policy, cname), func(t *testing.T) {
				var nodes []*model.Node
				if spec != "" {
					var err error
					if nodes, err = ParseNodes(spec); err != nil {
						t.Fatal(err)
					}
				}
				res, err := Run(readTiny(t), Options{Config: sched.Config{Policy: policy}, Nodes: nodes})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Jobs) != 5 || len(res.NeverStarted) != 0 {
					t.Fatalf("completed %d jobs, never started %v; want all 5 completed", len(res.Jobs), res.NeverStarted)
				}
				if diff := cmp.Diff(want, waitsByID(res)); diff != "" {
					t.Errorf("waits of jobs 1–5 (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestWalltimeStopsJobsThatOverranUnlessToldOtherwise(t *testing.T) {
	// Job 1 asks for 10 s and ran 30 s in the log; job 2 needs the whole
	// machine and waits for it.
	const trace = `; MaxProcs: 2
1 0 -1 30 2 -1 -1 2 10 -1 1 1 1 -1 -1 -1 -1 -1
2 1 -1  5 2 -1 -1 2 10 -1 1 1 1 -1 -1 -1 -1 -1
`
	for _, tc := range []struct {
		name    string
		runPast bool
		wantRun []time.Duration
		killed  []bool
		wait2   time.Duration
	}{
		{"stopped at the walltime (default)", false, secsList(10, 5), []bool{true, false}, 9 * time.Second},
		{"runs its logged time", true, secsList(30, 5), []bool{false, false}, 29 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ReadSWF(strings.NewReader(trace), "overrun.swf")
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(tr, Options{Config: sched.Config{Policy: sched.PolicyFIFO}, RunPastWalltime: tc.runPast})
			if err != nil {
				t.Fatal(err)
			}
			var runs []time.Duration
			var killed []bool
			for _, id := range []model.JobID{1, 2} {
				for _, r := range res.Jobs {
					if r.ID == id {
						runs, killed = append(runs, r.Run), append(killed, r.Killed)
					}
				}
			}
			if diff := cmp.Diff(tc.wantRun, runs); diff != "" {
				t.Errorf("run times (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.killed, killed); diff != "" {
				t.Errorf("killed flags (-want +got):\n%s", diff)
			}
			if got := waitsByID(res)[1]; got != tc.wait2 {
				t.Errorf("job 2 waited %s, want %s", got, tc.wait2)
			}
		})
	}
}

func TestSchedulerSeesRequestsNeverRuntimes(t *testing.T) {
	// Every model.Job the scheduler is given is built by Request.modelJob,
	// which has no runtime parameter; this checks the built job carries the
	// walltime and nothing that could be the runtime (runtime 7 s, walltime
	// 100 s: no 7 s anywhere).
	tr, err := ReadSWF(strings.NewReader("; MaxProcs: 8\n1 0 -1 7 3 -1 -1 3 100 -1 1 4 4 -1 2 -1 -1 -1\n"), "one.swf")
	if err != nil {
		t.Fatal(err)
	}
	j := tr.Jobs[0].Request.modelJob(1, time.Unix(0, 0), true)
	if j.Walltime != 100*time.Second {
		t.Errorf("walltime = %s, want 100s", j.Walltime)
	}
	if s := fmt.Sprintf("%+v", *j); strings.Contains(s, "7s") {
		t.Errorf("the scheduler's job mentions 7s, the actual runtime: %s", s)
	}
	if j.Groups[0].Count != 1 || j.Groups[0].Resources.MilliCPU != 3000 {
		t.Errorf("merged job = %d × %s, want 1 × 3 cpu", j.Groups[0].Count, j.Groups[0].Resources)
	}
	split := tr.Jobs[0].Request.modelJob(1, time.Unix(0, 0), false)
	if split.Groups[0].Count != 3 || split.Groups[0].Resources.MilliCPU != 1000 {
		t.Errorf("split job = %d × %s, want 3 × 1 cpu", split.Groups[0].Count, split.Groups[0].Resources)
	}
}

func TestJobsLargerThanTheClusterAreLeftOutAndCounted(t *testing.T) {
	const trace = `; MaxProcs: 4
1 0 -1 10 8 -1 -1 8 10 -1 1 1 1 -1 -1 -1 -1 -1
2 1 -1 10 4 -1 -1 4 10 -1 1 1 1 -1 -1 -1 -1 -1
`
	tr, err := ReadSWF(strings.NewReader(trace), "big.swf")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(tr, Options{Config: sched.Config{Policy: sched.PolicyFIFO}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Dropped["larger than the cluster"]; got != 1 {
		t.Errorf("dropped as too large: %d, want 1 (%v)", got, res.Dropped)
	}
	if len(res.Jobs) != 1 || res.Jobs[0].Wait() != 0 {
		t.Errorf("results %+v, want the 4-processor job alone, not waiting", res.Jobs)
	}
}

func TestRunWithoutAClusterSaysHowToGiveOne(t *testing.T) {
	tr, err := ReadSWF(strings.NewReader("1 0 -1 10 2 -1 -1 2 10 -1 1 1 1 -1 -1 -1 -1 -1\n"), "nohdr.swf")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(tr, Options{})
	if err == nil || !strings.Contains(err.Error(), "--nodes") {
		t.Fatalf("err = %v, want one pointing at --nodes", err)
	}
}

// A plan the virtual cluster cannot hold is a scheduler bug; the simulator
// must refuse it rather than run on with impossible numbers. The real
// scheduler never produces these plans, so a stand-in returns them.
func TestPlansTheClusterCannotHoldAreRejected(t *testing.T) {
	nodes, err := ParseNodes("1x2cpu")
	if err != nil {
		t.Fatal(err)
	}
	const trace = "1 0 -1 10 2 -1 -1 2 10 -1 1 1 1 -1 -1 -1 -1 -1\n2 0 -1 10 2 -1 -1 2 10 -1 1 1 1 -1 -1 -1 -1 -1\n"
	cpu := func(n int64) model.Resources { return model.Resources{MilliCPU: n * 1000} }
	for _, tc := range []struct {
		name string
		plan func(s *sched.Snapshot) *sched.Plan
		want string
	}{
		{"over-committed node", func(s *sched.Snapshot) *sched.Plan {
			var ps []sched.Placement
			for _, j := range s.Pending {
				ps = append(ps, sched.Placement{JobID: j.ID, Group: "main", Node: "n0", Resources: cpu(2)})
			}
			return &sched.Plan{Placements: ps}
		}, "over-committed in cpu"},
		{"unknown node", func(s *sched.Snapshot) *sched.Plan {
			return &sched.Plan{Placements: []sched.Placement{{JobID: 1, Group: "main", Node: "n9", Resources: cpu(2)}}}
		}, `unknown node "n9"`},
		{"smaller than asked", func(s *sched.Snapshot) *sched.Plan {
			return &sched.Plan{Placements: []sched.Placement{{JobID: 1, Group: "main", Node: "n0", Resources: cpu(1)}}}
		}, "its group asks"},
		{"job not pending", func(s *sched.Snapshot) *sched.Plan {
			return &sched.Plan{Placements: []sched.Placement{{JobID: 7, Group: "main", Node: "n0", Resources: cpu(2)}}}
		}, "job 7, which is not pending"},
		{"preempting an idle job", func(s *sched.Snapshot) *sched.Plan {
			return &sched.Plan{Preemptions: []sched.Preemption{{JobID: 2, Preemptor: 1}}}
		}, "not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ReadSWF(strings.NewReader(trace), "two.swf")
			if err != nil {
				t.Fatal(err)
			}
			_, err = run(tr, Options{Nodes: nodes}, func(s *sched.Snapshot, _ time.Time, _ sched.Config) *sched.Plan { return tc.plan(s) })
			if !errors.Is(err, ErrPlanInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrPlanInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

// A job that gives no walltime is stopped at its queue's default_walltime,
// as a dure server stops it; in a queue without one it runs its time.
func TestQueueDefaultWalltimeStopsJobsThatGiveNone(t *testing.T) {
	job := func(id model.JobID, queue string, walltime time.Duration) Job {
		return Job{ID: id, Number: int64(id), Runtime: 3 * time.Hour,
			Request: Request{Queue: queue, Walltime: walltime, Tasks: 1, PerTask: model.Resources{MilliCPU: 1000}}}
	}
	tr := &Trace{Name: "t", Format: "philly", Jobs: []Job{
		job(1, "short", 0),            // the queue's default: 1h
		job(2, "short", 2*time.Hour),  // its own
		job(3, model.DefaultQueue, 0), // no default: runs its 3h
	}}
	nodes := []*model.Node{{Name: "n1", Status: model.NodeReady, Capacity: model.Resources{MilliCPU: 4000, MemoryBytes: 1 << 30}}}
	queues := []*model.Queue{{Name: "short", DefaultWalltime: time.Hour}, {Name: model.DefaultQueue}}
	res, err := Run(tr, Options{Config: sched.Config{Policy: sched.PolicyFIFO}, Nodes: nodes, Queues: queues})
	if err != nil {
		t.Fatal(err)
	}
	got := map[model.JobID]time.Duration{}
	killed := map[model.JobID]bool{}
	for _, r := range res.Jobs {
		got[r.ID], killed[r.ID] = r.Run, r.Killed
	}
	want := map[model.JobID]time.Duration{1: time.Hour, 2: 2 * time.Hour, 3: 3 * time.Hour}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("run times (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[model.JobID]bool{1: true, 2: true, 3: false}, killed); diff != "" {
		t.Errorf("stopped at a walltime (-want +got):\n%s", diff)
	}
}
