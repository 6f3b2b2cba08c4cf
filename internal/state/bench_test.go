package state_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
	"github.com/durehq/dure/internal/testkit"
)

// BenchmarkJobLifecycle writes jobs the way the control plane does under a
// stream of short jobs, in transactions of ten (a raft entry's worth):
// submitted, placed with one allocation, the allocation running and ended,
// the job finished, with 1,000 to 100,000 (the default retention) finished
// jobs kept as history. Jobs carry an owner and a random idempotency key,
// as the API client gives every submission. One op is one job's whole
// life.
func BenchmarkJobLifecycle(b *testing.B) {
	for _, history := range []int{1000, 20000, 100000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) { benchJobLifecycle(b, history) })
	}
}

func benchJobLifecycle(b *testing.B, history int) {
	s := state.New()
	rng := rand.New(rand.NewPCG(1, 2))
	idx := uint64(1)
	const per = 10
	next := model.JobID(1)
	life := func(n int) {
		first := next
		next += model.JobID(n)
		step := func(fn func(tx *state.WriteTxn, id model.JobID)) {
			write(b, s, idx, func(tx *state.WriteTxn) {
				for id := first; id < first+model.JobID(n); id++ {
					fn(tx, id)
				}
			})
			idx++
		}
		step(func(tx *state.WriteTxn, id model.JobID) {
			j := testkit.Job(id).Build()
			j.Owner, j.IdempotencyKey = "bench", fmt.Sprintf("auto-%016x", rng.Uint64())
			tx.PutJob(j)
		})
		step(func(tx *state.WriteTxn, id model.JobID) {
			j := tx.Job(id).Copy()
			j.State = model.JobRunning
			tx.PutJob(j)
			tx.PutAlloc(testkit.Alloc(id, 0, "n1").Build())
		})
		step(func(tx *state.WriteTxn, id model.JobID) {
			a := tx.Alloc(testkit.Alloc(id, 0, "n1").Build().ID).Copy()
			a.Status = model.AllocExited
			tx.PutAlloc(a)
			j := tx.Job(id).Copy()
			j.State = model.JobSucceeded
			tx.PutJob(j)
		})
	}
	for range history / per {
		life(per)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += per {
		life(per)
	}
}

// BenchmarkPersist writes a raft snapshot of a state holding 100,000
// finished jobs, each with one allocation (the default retention's worth).
func BenchmarkPersist(b *testing.B) {
	s := state.New()
	for first := model.JobID(1); first <= 100000; first += 1000 {
		write(b, s, uint64(first), func(tx *state.WriteTxn) {
			for id := first; id < first+1000; id++ {
				tx.PutJob(testkit.Job(id).State(model.JobSucceeded).Build())
				tx.PutAlloc(testkit.Alloc(id, 0, "n1").Status(model.AllocExited).Build())
			}
		})
	}
	snap := s.Snapshot()
	var out countingWriter
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		out = 0
		if err := snap.Persist(&out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(out)/1e6, "MB")
}

type countingWriter int

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}
