package sched

import (
	"fmt"
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// backlogWorkload is `dure dev` under `dure bench dispatch`: two nodes of
// one core, each full of 100m tasks but for free slots, and pending
// identical 100m jobs of one owner in the default queue, with a history
// window of the owner's finished jobs as the server hands it (by end time
// then ID; jobs whose ends were reported in one write end at the same
// time).
func backlogWorkload(pending, free int) *Snapshot {
	return backlogWorkloadOf(pending, free, "bench")
}

// backlogWorkloadOf is backlogWorkload with the pending jobs and the
// history spread over owners in turn.
func backlogWorkloadOf(pending, free int, owners ...string) *Snapshot {
	s := &Snapshot{}
	for i := range 2 {
		s.Nodes = append(s.Nodes, testkit.Node(fmt.Sprintf("dev-%d", i+1)).MilliCPU(1000).Mem("8G").Build())
	}
	id := model.JobID(1)
	for n := range 20 - free {
		s.Allocs = append(s.Allocs, testkit.Alloc(id, 0, s.Nodes[n%2].Name).Resources(model.Resources{MilliCPU: 100}).Build())
		id++
	}
	for i := range 1000 {
		end := testkit.Epoch.Add(-time.Duration(1000-i/5*5) * time.Millisecond)
		s.History = append(s.History, model.FinishedJob{ID: id, Owner: owners[i%len(owners)], Usage: model.Resources{MilliCPU: 100}, Ran: 6 * time.Millisecond, SubmitTime: end.Add(-10 * time.Millisecond), StartTime: end.Add(-6 * time.Millisecond), EndTime: end})
		id++
	}
	for i := range pending {
		s.Pending = append(s.Pending, testkit.Job(id).Owner(owners[i%len(owners)]).Name("bench").Resources(model.Resources{MilliCPU: 100}).
			Submitted(testkit.Epoch.Add(-time.Duration(pending-i)*time.Millisecond)).Build())
		id++
	}
	return s
}

// BenchmarkBacklogPass is one pass of the server's loop under a backlog of
// identical jobs on a full dev cluster: a few slots free, the rest wait.
// Its cost per pass, not per placement, is what paces the loop.
func BenchmarkBacklogPass(b *testing.B) {
	for _, c := range []struct {
		pending int
		tail    bool
		owners  int
	}{{100, false, 1}, {1000, false, 1}, {10000, false, 1}, {30000, false, 1}, {10000, true, 1}, {30000, true, 1}, {100, false, 2}} {
		s := backlogWorkload(c.pending, 4)
		name := fmt.Sprintf("pending=%d", c.pending)
		if c.owners == 2 {
			// Two owners' jobs compete: their shares, read from the
			// history, decide the order.
			s = backlogWorkloadOf(c.pending, 4, "ann", "bob")
			name += "/owners=2"
		}
		if c.tail {
			// As the server hands it in: the first jobs of the run
			// pending, the rest a tail.
			const head = 64
			s.Tails = []Tail{{After: s.Pending[head-1].ID, Jobs: s.Pending[head:]}}
			s.Pending = s.Pending[:head]
			name += "/tail"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var plan *Plan
			var sc Scratch
			cpu0 := cpuTime()
			for b.Loop() {
				plan = sc.Schedule(s, testkit.Epoch, Config{})
			}
			if len(plan.Placements) != 4 {
				b.Fatalf("placed %d jobs, want the 4 free slots filled", len(plan.Placements))
			}
			if c.tail && len(plan.Tails) != 1 {
				b.Fatal("the pass ran again with the tail pending: the benchmark would measure the full pass")
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/pass")
		})
	}
}
