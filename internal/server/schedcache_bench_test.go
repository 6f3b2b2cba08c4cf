package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/state"
)

// BenchmarkSchedCacheBacklog is the cache's share of one pass of the
// server's loop under a backlog of identical jobs, as `dure bench
// dispatch` makes it: since the last pass, 4 of the oldest started and 4
// were submitted; the pass reads its input and logs the tail's reason for
// the newcomers. Its cost should not grow with the backlog.
func BenchmarkSchedCacheBacklog(b *testing.B) {
	for _, backlog := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("pending=%d", backlog), func(b *testing.B) {
			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			store := state.New()
			var idx uint64
			var next, oldest model.JobID = 0, 1
			waiting := model.Reason{Code: "resources"}
			job := func(reason model.Reason) *model.Job {
				next++
				return &model.Job{ID: next, State: model.JobPending, Owner: "bench", Queue: "default", Reason: reason,
					SubmitTime: base.Add(time.Duration(next) * time.Millisecond),
					Groups:     []model.TaskGroup{{Name: "main", Count: 1, Resources: model.Resources{MilliCPU: 100}}}}
			}
			write := func(fn func(tx *state.WriteTxn)) {
				idx++
				if err := store.Write(idx, func(tx *state.WriteTxn) error { fn(tx); return nil }); err != nil {
					b.Fatal(err)
				}
			}
			write(func(tx *state.WriteTxn) {
				for range backlog {
					tx.PutJob(job(waiting))
				}
			})
			var c schedCache
			pass := func() {
				snap := c.snapshot(store)
				in, _, _ := c.input(snap, base)
				if len(in.Tails) != 1 {
					b.Fatalf("%d tails, want the backlog's one", len(in.Tails))
				}
				changes := map[model.JobID]model.Reason{}
				c.tailReasonChanges([]sched.TailReason{{After: in.Tails[0].After, Jobs: in.Tails[0].Jobs, Reason: waiting}}, changes)
				if len(changes) > 0 {
					write(func(tx *state.WriteTxn) {
						for id, r := range changes {
							j := *snap.Job(id)
							j.Reason = r
							tx.PutJob(&j)
						}
					})
				}
			}
			pass()
			b.ReportAllocs()
			for b.Loop() {
				write(func(tx *state.WriteTxn) {
					for range 4 {
						j := *store.Snapshot().Job(oldest)
						j.State, j.StartTime = model.JobRunning, base
						tx.PutJob(&j)
						oldest++
						tx.PutJob(job(model.Reason{}))
					}
				})
				pass()
			}
		})
	}
}
