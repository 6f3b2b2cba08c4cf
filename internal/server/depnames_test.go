package server

import (
	"strings"
	"testing"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/testkit"
)

// TestDependencyReasonsNameArrayElements: a job waiting for an array
// element, or for a whole array, is told the element's name (10_2), not
// its internal ID, in the reason the scheduler gives it from the server's
// input.
func TestDependencyReasonsNameArrayElements(t *testing.T) {
	f, apply := testFSM(t)
	now := testkit.Epoch
	apply(&fsm.UpsertQueue{Queue: model.Queue{Name: model.DefaultQueue}})
	// Array 10: elements 10, 11, 12 are indices 0, 2, 4 (--array 0-4:2).
	arr := testkit.Job(10).Build()
	arr.SubmitTime = now
	apply(&fsm.SubmitJob{Job: *arr, Array: &model.Array{Ranges: []model.ArrayRange{{First: 0, Last: 4, Step: 2}}}})
	onElement := testkit.Job(20).After(model.AfterOK, 12).Build()
	onElement.SubmitTime = now
	apply(&fsm.SubmitJob{Job: *onElement})
	onArray := testkit.Job(21).Build()
	onArray.Dependencies = []model.Dependency{{Type: model.AfterOK, JobID: 10, Array: true}}
	onArray.SubmitTime = now
	apply(&fsm.SubmitJob{Job: *onArray})

	in, _, _ := schedInput(f.Store().Snapshot(), now)
	plan := sched.Schedule(in, now, sched.Config{})
	for id, want := range map[model.JobID]string{
		20: "waiting for job 10_4 (afterok, pending)",
		21: "waiting for job 10_0 (afterok, pending)", // the first element still to run decides
	} {
		if got := plan.Reasons[id].Message; !strings.Contains(got, want) {
			t.Errorf("job %d: reason %q, want it to say %q", id, got, want)
		}
	}
}
