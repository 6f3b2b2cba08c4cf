package fsm_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

func TestSubmitJobsAppliesAllOrNone(t *testing.T) {
	h := newHarness(t)
	earlier := testkit.Job(0).Owner("ada").Build()
	earlier.IdempotencyKey = "k0"
	first := h.submit(earlier)

	batch := func(ids ...model.JobID) []model.Job {
		var out []model.Job
		for i, id := range ids {
			j := testkit.Job(id).Owner("ada").Build()
			j.SubmitTime = h.now
			j.IdempotencyKey = "k" + string(rune('a'+i))
			out = append(out, *j)
		}
		return out
	}
	jobs := batch(first+1, first+2, first+3)
	jobs[1].IdempotencyKey = "k0" // a retry of the earlier job
	jobs[2].IdempotencyKey = "ka" // a retry of the first job of this batch
	res := h.must(&fsm.SubmitJobs{Jobs: jobs})
	if diff := cmp.Diff([]model.JobID{first + 1, first, first + 1}, res.JobIDs); diff != "" {
		t.Errorf("IDs (-want +got):\n%s", diff)
	}
	if h.snap().Job(first+2) != nil || h.snap().Job(first+3) != nil {
		t.Error("a repeated idempotency key created a job")
	}
	if j := h.job(first + 1); j.State != model.JobPending || j.Reason.Code != model.ReasonNewJob {
		t.Errorf("job %d: %s %+v; want pending, NewJob", j.ID, j.State, j.Reason)
	}

	// One bad job refuses the whole entry.
	bad := batch(first+10, first+11)
	bad[1].Queue = "nosuch"
	before := h.snap().LastJobID()
	if res := h.apply(&fsm.SubmitJobs{Jobs: bad}); !errors.Is(res.Err, fsm.ErrNotFound) || res.JobIDs != nil {
		t.Errorf("batch with an unknown queue: %+v; want ErrNotFound and no IDs", res)
	}
	if h.snap().Job(first+10) != nil || h.snap().LastJobID() != before {
		t.Error("the good job of a refused batch was stored")
	}
}
