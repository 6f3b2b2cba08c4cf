package server_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// Arrays and plain jobs submitted at once get disjoint IDs: an array's
// elements are consecutive, and nothing else lands among them.
func TestArraysTakeConsecutiveIDs(t *testing.T) {
	s := start(t, config(t, t.TempDir()))
	arr := model.Array{Ranges: []model.ArrayRange{{First: 0, Last: 9}}}
	var mu sync.Mutex
	var arrays []model.JobID
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			id, err := s.SubmitArray(ctx(t), *testkit.Job(0).Build(), arr)
			if err != nil {
				t.Errorf("SubmitArray: %v", err)
			}
			mu.Lock()
			arrays = append(arrays, id)
			mu.Unlock()
		}()
		go func() {
			defer wg.Done()
			if _, err := s.SubmitJob(ctx(t), *testkit.Job(0).Build()); err != nil {
				t.Errorf("SubmitJob: %v", err)
			}
		}()
	}
	wg.Wait()
	snap := s.Store().Snapshot()
	if last := snap.LastJobID(); last != 33 {
		t.Errorf("LastJobID = %d; want 33 (3 arrays of 10 and 3 jobs)", last)
	}
	for _, id := range arrays {
		elems := snap.ArrayElements(id)
		if len(elems) != 10 {
			t.Fatalf("array %d has %d elements; want 10", id, len(elems))
		}
		for i, e := range elems {
			if e.ID != id+model.JobID(i) || e.ArrayIndex != i {
				t.Errorf("element %d of array %d is job %d index %d; want job %d", i, id, e.ID, e.ArrayIndex, id+model.JobID(i))
			}
		}
	}
}

// A dependency on a whole array waits for every element and ends the
// dependent once one element fails.
func TestArrayDependencyWaitsForEveryElement(t *testing.T) {
	s := start(t, config(t, t.TempDir()))
	register(t, s, "n1", 4)
	agent(t, s, "n1")
	arr, err := s.SubmitArray(ctx(t), *testkit.Job(0).Build(), model.Array{Ranges: []model.ArrayRange{{First: 0, Last: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	dep := testkit.Job(0).Build()
	dep.Dependencies = []model.Dependency{{Type: model.AfterOK, JobID: arr, Array: true}}
	d, err := s.SubmitJob(ctx(t), *dep)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both elements to run", func() bool {
		return jobState(s, arr) == model.JobRunning && jobState(s, arr+1) == model.JobRunning
	})
	waitFor(t, "the dependent to wait on a dependency", func() bool {
		return s.Store().Snapshot().Job(d).Reason.Code == model.ReasonDependency
	})
	exit := func(id model.JobID, code int) {
		t.Helper()
		if err := s.UpdateAllocs(ctx(t), []fsm.AllocUpdate{{AllocID: model.AllocID(id, 0, 1), Node: "n1", Status: model.AllocExited, ExitCode: code}}); err != nil {
			t.Fatal(err)
		}
	}
	exit(arr, 0)
	waitFor(t, "element 0 to succeed", func() bool { return jobState(s, arr) == model.JobSucceeded })
	if st := jobState(s, d); st != model.JobPending {
		t.Fatalf("dependent is %s with one element still running; want pending", st)
	}
	exit(arr+1, 2)
	waitFor(t, "the dependent to be cancelled", func() bool { return jobState(s, d) == model.JobCancelled })
	j := s.Store().Snapshot().Job(d)
	if j.Reason.Code != model.ReasonDependencyNever || !strings.Contains(j.Reason.Message, "_1 of array") {
		t.Errorf("reason = %+v; want DependencyNeverSatisfied naming the failed element", j.Reason)
	}
}

// A gang with a minimum starts with what fits, and its tasks are told how
// many started.
func TestPartialGangStartsWithWhatFits(t *testing.T) {
	s := start(t, config(t, t.TempDir()))
	register(t, s, "n1", 2)
	agent(t, s, "n1")
	id, err := s.SubmitJob(ctx(t), *testkit.Job(0).Tasks(4).MinTasks(2).Build())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gang to start", func() bool { return jobState(s, id) == model.JobRunning })
	snap := s.Store().Snapshot()
	if j := snap.Job(id); j.StartedTasks != 2 {
		t.Errorf("started tasks = %d; want 2 (two one-core tasks fit on two cores)", j.StartedTasks)
	}
	allocs := snap.AllocsByJob(id)
	if len(allocs) != 2 {
		t.Fatalf("%d allocations; want 2", len(allocs))
	}
	for _, a := range allocs {
		if a.TaskCount != 2 || a.TaskIndex > 1 {
			t.Errorf("allocation %s: task %d of %d; want tasks 0 and 1 of 2", a.ID, a.TaskIndex, a.TaskCount)
		}
	}
}
