package fsm_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// submitArray gives an array the next IDs and submits it, as the leader would.
func (h *harness) submitArray(j *model.Job, a model.Array) (model.JobID, fsm.Result) {
	h.t.Helper()
	j.ID = h.snap().LastJobID() + 1
	j.SubmitTime = h.now
	res := h.apply(&fsm.SubmitJob{Job: *j, Array: &a})
	return j.ID, res
}

func ranges(rs ...[3]int) []model.ArrayRange {
	var out []model.ArrayRange
	for _, r := range rs {
		out = append(out, model.ArrayRange{First: r[0], Last: r[1], Step: r[2]})
	}
	return out
}

func TestSubmitArrayMakesOneJobPerIndexInIndexOrder(t *testing.T) {
	h := newHarness(t)
	h.submit(testkit.Job(0).Build()) // job 1: the array starts at 2
	tmpl := testkit.Job(0).Name("sweep").Owner("ada").Tasks(2).Command("echo", "hi").Build()
	// Written out of order and overlapping: 10-12, then 1,3,5, then 3 again.
	id, res := h.submitArray(tmpl, model.Array{Ranges: ranges([3]int{10, 12, 1}, [3]int{1, 5, 2}, [3]int{3, 3, 0}), Throttle: 2})
	if res.Err != nil || res.JobID != id || id != 2 {
		t.Fatalf("submit array = %+v; want job ID 2 (the array's, its first element's)", res)
	}
	var got []string
	for _, e := range h.snap().ArrayElements(id) {
		if e.State != model.JobPending || e.ArrayThrottle != 2 || e.Name != "sweep" || e.TaskCount() != 2 {
			t.Errorf("element %d: state %s throttle %d name %q tasks %d; want pending, 2, sweep, 2", e.ID, e.State, e.ArrayThrottle, e.Name, e.TaskCount())
		}
		got = append(got, fmt.Sprintf("%d=%s", e.ID, e.DisplayName()))
	}
	want := []string{"2=2_1", "3=2_3", "4=2_5", "5=2_10", "6=2_11", "7=2_12"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("elements (-want +got):\n%s", diff)
	}
	if last := h.snap().LastJobID(); last != 7 {
		t.Errorf("LastJobID = %d; want 7, the last element", last)
	}
	if ev := h.job(5).Events[0].Message; !strings.Contains(ev, "element 10 of array 2 (6 elements)") {
		t.Errorf("submission event %q does not say which element it is", ev)
	}
	// The next plain job follows the array.
	if next := h.submit(testkit.Job(0).Build()); next != 8 {
		t.Errorf("next job ID = %d; want 8", next)
	}
}

func TestSubmitArrayRefusesBadEntriesWhole(t *testing.T) {
	tests := []struct {
		name  string
		first model.JobID // 0: the next free ID
		arr   model.Array
		want  error
	}{
		{"overlaps an existing job", 1, model.Array{Ranges: ranges([3]int{0, 3, 1})}, fsm.ErrConflict},
		{"no ranges", 0, model.Array{}, fsm.ErrInvalid},
		{"backwards range", 0, model.Array{Ranges: ranges([3]int{5, 1, 1})}, fsm.ErrInvalid},
		{"negative step", 0, model.Array{Ranges: ranges([3]int{1, 5, -1})}, fsm.ErrInvalid},
		{"too many elements", 0, model.Array{Ranges: ranges([3]int{0, model.MaxArraySize, 1})}, fsm.ErrInvalid},
		{"negative throttle", 0, model.Array{Ranges: ranges([3]int{0, 3, 1}), Throttle: -1}, fsm.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.submit(testkit.Job(0).Build())
			j := testkit.Job(0).Build()
			j.ID = tc.first
			if j.ID == 0 {
				j.ID = 2
			}
			res := h.apply(&fsm.SubmitJob{Job: *j, Array: &tc.arr})
			if !errors.Is(res.Err, tc.want) {
				t.Fatalf("Apply = %v; want %v", res.Err, tc.want)
			}
			if last := h.snap().LastJobID(); last != 1 {
				t.Errorf("a refused array left jobs behind: LastJobID = %d", last)
			}
		})
	}
}

func TestSubmitArrayWithRepeatedKeyReturnsTheArray(t *testing.T) {
	h := newHarness(t)
	j := testkit.Job(0).Owner("ada").Build()
	j.IdempotencyKey = "k1"
	id, res := h.submitArray(j.Copy(), model.Array{Ranges: ranges([3]int{0, 4, 1})})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	_, again := h.submitArray(j.Copy(), model.Array{Ranges: ranges([3]int{0, 4, 1})})
	if again.Err != nil || again.JobID != id {
		t.Errorf("resubmission with the same key = %+v; want array %d", again, id)
	}
	if last := h.snap().LastJobID(); last != id+4 {
		t.Errorf("LastJobID = %d; want %d (no second array)", last, id+4)
	}
}

func TestCancelArrayCancelsEveryUnfinishedElement(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	id, _ := h.submitArray(testkit.Job(0).Build(), model.Array{Ranges: ranges([3]int{0, 3, 1})})
	done, running := id, id+1 // elements 0 and 1
	h.place(done, "n1")
	h.update(exited(h.alloc(model.AllocID(done, 0, 1)), 0))
	h.place(running, "n1")
	h.started(running)

	if res := h.apply(&fsm.CancelArray{Time: h.now, ArrayID: id, Reason: "by user request"}); res.Err != nil || res.JobID != id {
		t.Fatalf("CancelArray = %+v", res)
	}
	got := map[string]model.JobState{}
	for _, e := range h.snap().ArrayElements(id) {
		got[e.DisplayName()] = e.State
	}
	pre := fmt.Sprintf("%d_", id)
	want := map[string]model.JobState{pre + "0": model.JobSucceeded, pre + "1": model.JobCancelled, pre + "2": model.JobCancelled, pre + "3": model.JobCancelled}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("element states (-want +got):\n%s", diff)
	}
	if a := h.alloc(model.AllocID(running, 0, 1)); a.Desired != model.DesiredStop {
		t.Errorf("running element's task: desired %s; want stop", a.Desired)
	}
	if r := h.job(id + 2).Reason; r.Code != model.ReasonCancelled || !strings.Contains(r.Message, "by user request") {
		t.Errorf("reason = %+v; want Cancelled with the user's reason", r)
	}
	if res := h.apply(&fsm.CancelArray{Time: h.now, ArrayID: id}); !errors.Is(res.Err, fsm.ErrConflict) {
		t.Errorf("second CancelArray = %v; want ErrConflict", res.Err)
	}
	plain := h.submit(testkit.Job(0).Build())
	for _, missing := range []model.JobID{plain, 99} {
		if res := h.apply(&fsm.CancelArray{Time: h.now, ArrayID: missing}); !errors.Is(res.Err, fsm.ErrNotFound) {
			t.Errorf("CancelArray of %d (not an array) = %v; want ErrNotFound", missing, res.Err)
		}
	}
}

// neverPlan is what the leader commits when the scheduler reports that a
// job's dependency can never be met.
func (h *harness) neverPlan(id model.JobID) {
	h.t.Helper()
	h.must(&fsm.CommitPlan{Time: h.now, Term: h.term, Reasons: []fsm.JobReason{{JobID: id, Reason: model.Reason{
		Code: model.ReasonDependencyNever, Message: "the scheduler's words"}}}})
}

func TestDependencyNeverSatisfiedCancelsTheDependent(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	a := h.submit(testkit.Job(0).Build())
	b := h.submit(testkit.Job(0).After(model.AfterOK, a).Build())
	c := h.submit(testkit.Job(0).After(model.AfterNotOK, a).Build())

	// While A runs, a plan that claims B can never run is not believed.
	h.place(a, "n1")
	h.neverPlan(b)
	if j := h.job(b); j.State != model.JobPending {
		t.Fatalf("B is %s while A still runs; want pending", j.State)
	}

	h.update(exited(h.alloc(model.AllocID(a, 0, 1)), 3))
	h.neverPlan(b)
	j := h.job(b)
	if j.State != model.JobCancelled || j.Reason.Code != model.ReasonDependencyNever {
		t.Fatalf("B = %s %+v; want cancelled with DependencyNeverSatisfied", j.State, j.Reason)
	}
	if want := fmt.Sprintf("dependency afterok:%d can never be satisfied: job %d failed", a, a); j.Reason.Message != want {
		t.Errorf("reason message = %q; want %q", j.Reason.Message, want)
	}
	if j.EndTime.IsZero() {
		t.Error("B has no end time")
	}
	// afternotok on the failed job is satisfied: a plan cannot cancel C.
	h.neverPlan(c)
	if j := h.job(c); j.State != model.JobPending {
		t.Errorf("C (afternotok on a failed job) is %s; want pending", j.State)
	}
	// A chain collapses one link per plan: D waits on B, which was cancelled.
	d := h.submit(testkit.Job(0).After(model.AfterOK, b).Build())
	h.neverPlan(d)
	if j := h.job(d); j.State != model.JobCancelled || !strings.Contains(j.Reason.Message, "cancelled") {
		t.Errorf("D = %s %+v; want cancelled because B was cancelled", j.State, j.Reason)
	}
}

func TestArrayDependencyFollowsEveryElement(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	arr, _ := h.submitArray(testkit.Job(0).Build(), model.Array{Ranges: ranges([3]int{0, 2, 1})})
	dep := testkit.Job(0).Build()
	dep.Dependencies = []model.Dependency{{Type: model.AfterOK, JobID: arr, Array: true}}
	d := h.submit(dep)
	for _, e := range []model.JobID{arr, arr + 1} {
		h.place(e, "n1")
		h.update(exited(h.alloc(model.AllocID(e, 0, 1)), 0))
	}
	h.neverPlan(d)
	if j := h.job(d); j.State != model.JobPending {
		t.Fatalf("dependent is %s with two elements succeeded and one pending; want pending", j.State)
	}
	h.place(arr+2, "n1")
	h.update(exited(h.alloc(model.AllocID(arr+2, 0, 1)), 1))
	h.neverPlan(d)
	j := h.job(d)
	want := fmt.Sprintf("dependency afterok:%d can never be satisfied: element %d_2 of array %d failed", arr, arr, arr)
	if j.State != model.JobCancelled || j.Reason.Message != want {
		t.Errorf("dependent = %s %q; want cancelled with %q", j.State, j.Reason.Message, want)
	}
}

func TestDependencyOnALaterJobIsRefused(t *testing.T) {
	h := newHarness(t)
	h.submit(testkit.Job(0).Build())
	for _, on := range []model.JobID{2, 3} { // itself, a later job
		j := testkit.Job(2).After(model.AfterOK, on).Build()
		j.SubmitTime = h.now
		if res := h.apply(&fsm.SubmitJob{Job: *j}); !errors.Is(res.Err, fsm.ErrInvalid) {
			t.Errorf("job 2 depending on %d: %v; want ErrInvalid", on, res.Err)
		}
	}
	j := testkit.Job(2).After("before", 1).Build()
	if res := h.apply(&fsm.SubmitJob{Job: *j}); !errors.Is(res.Err, fsm.ErrInvalid) {
		t.Errorf("unknown dependency type: %v; want ErrInvalid", res.Err)
	}
}

func TestPruneKeepsJobsThatPendingJobsDependOn(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	a := h.submit(testkit.Job(0).Build())
	arr, _ := h.submitArray(testkit.Job(0).Build(), model.Array{Ranges: ranges([3]int{0, 1, 1})})
	for _, id := range []model.JobID{a, arr, arr + 1} {
		h.place(id, "n1")
		h.update(exited(h.alloc(model.AllocID(id, 0, 1)), 0))
	}
	dep := testkit.Job(0).After(model.AfterOK, a).Build()
	dep.Dependencies = append(dep.Dependencies, model.Dependency{Type: model.AfterOK, JobID: arr, Array: true})
	d := h.submit(dep)
	h.must(&fsm.PruneJobs{IDs: []model.JobID{a, arr, arr + 1}})
	for _, id := range []model.JobID{a, arr, arr + 1} {
		if h.snap().Job(id) == nil {
			t.Errorf("job %d was pruned while pending job %d depends on it", id, d)
		}
	}
	h.must(&fsm.CancelJob{Time: h.now, ID: d})
	h.must(&fsm.PruneJobs{IDs: []model.JobID{a, arr, arr + 1}})
	for _, id := range []model.JobID{a, arr, arr + 1} {
		if h.snap().Job(id) != nil {
			t.Errorf("job %d survived the prune once nothing depends on it", id)
		}
	}
}

func TestPartialGangCommitsBetweenMinimumAndTaskCount(t *testing.T) {
	h := newHarness(t)
	h.node("n1")
	gang := h.submit(testkit.Job(0).Tasks(4).MinTasks(2).Build())
	whole := h.submit(testkit.Job(0).Tasks(4).Build())
	first := func(id model.JobID, tasks ...int) fsm.PlannedJob {
		pj := h.plannedJob(id, "n1")
		var keep []model.Allocation
		for _, t := range tasks {
			keep = append(keep, pj.Allocs[t])
		}
		pj.Allocs = keep
		return pj
	}
	for _, tc := range []struct {
		name string
		pj   fsm.PlannedJob
	}{
		{"below the gang minimum", first(gang, 0)},
		{"not the first tasks", first(gang, 0, 2)},
		{"a task twice", first(gang, 0, 0, 1)},
		{"part of a job without a minimum", first(whole, 0, 1, 2)},
	} {
		if res := h.must(&fsm.CommitPlan{Time: h.now, Term: h.term, Jobs: []fsm.PlannedJob{tc.pj}}); res.Placed != 0 || res.Skipped != 1 {
			t.Errorf("%s: placed %d skipped %d; want the plan skipped", tc.name, res.Placed, res.Skipped)
		}
	}
	if res := h.must(&fsm.CommitPlan{Time: h.now, Term: h.term, Jobs: []fsm.PlannedJob{first(gang, 0, 1, 2)}}); res.Placed != 1 {
		t.Fatalf("3 of 4 tasks with a minimum of 2: placed %d; want 1", res.Placed)
	}
	j := h.job(gang)
	if j.State != model.JobRunning || j.StartedTasks != 3 {
		t.Errorf("gang = %s with %d started; want running with 3", j.State, j.StartedTasks)
	}
	if ev := j.Events[len(j.Events)-1].Message; !strings.Contains(ev, "3 of 4 tasks (gang minimum 2)") {
		t.Errorf("placed event %q does not say the gang started partly", ev)
	}
	// The started tasks are the whole job: when they all exit 0, it succeeded.
	h.started(gang)
	for task := range 3 {
		h.update(exited(h.alloc(model.AllocID(gang, task, 1)), 0))
	}
	if j := h.job(gang); j.State != model.JobSucceeded || !strings.Contains(j.Reason.Message, "all 3 task(s)") {
		t.Errorf("gang = %s %+v; want succeeded after its 3 started tasks", j.State, j.Reason)
	}
}

// BenchmarkSubmitArray10k applies one entry that makes a 10,000-element
// array (the most one submission may have).
func BenchmarkSubmitArray10k(b *testing.B) {
	tmpl := testkit.Job(0).Name("sweep").Command("python", "sweep.py").Build()
	arr := model.Array{Ranges: ranges([3]int{0, model.MaxArraySize - 1, 1}), Throttle: 50}
	for b.Loop() {
		b.StopTimer()
		h := newHarness(b)
		b.StartTimer()
		if _, res := h.submitArray(tmpl.Copy(), arr); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}
