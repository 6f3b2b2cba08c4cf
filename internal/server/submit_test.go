package server_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/server"
	"github.com/durehq/dure/internal/testkit"
)

// Concurrent submissions share log entries (group commit); each still gets
// its own job, and a repeated idempotency key its first job.
func TestConcurrentSubmissions(t *testing.T) {
	s := start(t, config(t, t.TempDir()))
	const n = 64
	ids := make([]model.JobID, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			j := testkit.Job(0).Owner("ada").Name(fmt.Sprint("job-", i)).Build()
			j.IdempotencyKey = fmt.Sprint("key-", i%(n/2)) // every key twice
			id, err := s.SubmitJob(ctx(t), *j)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	snap := s.Store().Snapshot()
	for i := range n / 2 {
		if ids[i] == 0 || ids[i] != ids[i+n/2] {
			t.Errorf("key-%d: jobs %d and %d; want one job for both submissions", i, ids[i], ids[i+n/2])
		}
		if j := snap.Job(ids[i]); j == nil || j.IdempotencyKey != fmt.Sprint("key-", i) || j.State != model.JobPending {
			t.Errorf("job %d: %+v; want a pending job with key-%d", ids[i], j, i)
		}
	}
	if got := len(snap.JobsInState(model.JobPending)); got != n/2 {
		t.Errorf("%d jobs stored; want %d", got, n/2)
	}
}

func TestSubmitJobsIsOneBatch(t *testing.T) {
	s := start(t, config(t, t.TempDir()))
	jobs := make([]model.Job, 5)
	for i := range jobs {
		jobs[i] = *testkit.Job(0).Owner("ada").Build()
		jobs[i].IdempotencyKey = fmt.Sprint("batch-", i)
	}
	ids, err := s.SubmitJobs(ctx(t), jobs)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Fatalf("IDs %v; want consecutive IDs in submission order", ids)
		}
	}
	snap := s.Store().Snapshot()
	for i, id := range ids {
		if j := snap.Job(id); j == nil || j.IdempotencyKey != jobs[i].IdempotencyKey || !j.SubmitTime.Equal(snap.Job(ids[0]).SubmitTime) {
			t.Errorf("job %d: %+v; want batch-%d submitted with the others", id, j, i)
		}
	}
	// The client lost the answer and sends the batch again.
	again, err := s.SubmitJobs(ctx(t), jobs)
	if err != nil || !slices.Equal(again, ids) {
		t.Errorf("retried batch: %v, %v; want the same IDs %v", again, err, ids)
	}
	if got := len(s.Store().Snapshot().JobsInState(model.JobPending)); got != len(jobs) {
		t.Errorf("%d jobs after the retry; want %d", got, len(jobs))
	}
	if _, err := s.SubmitJobs(ctx(t), make([]model.Job, server.MaxSubmitBatch+1)); err == nil {
		t.Errorf("a batch of %d jobs was accepted; want at most %d", server.MaxSubmitBatch+1, server.MaxSubmitBatch)
	}
}
