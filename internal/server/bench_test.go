package server_test

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// BenchmarkSubmit measures how many submissions per second the control plane
// absorbs (HTTP excluded): parallel SubmitJob calls, each a raft entry with
// its fsync, batched by raft under concurrency.
func BenchmarkSubmit(b *testing.B) {
	s := start(b, config(b, b.TempDir()))
	job := *testkit.Job(0).Tasks(1).Build()
	b.SetParallelism(8)
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.SubmitJob(context.Background(), job); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/job")
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDispatch measures the control plane's whole loop without real
// processes: parallel submissions are scheduled onto 100 registered nodes,
// committed as plans, and reported running and exited at once by a fake
// agent loop through the same UpdateAllocs path real agents use. It reports
// jobs completed per second: the ceiling the control plane puts on dispatch.
func BenchmarkDispatch(b *testing.B) {
	s := start(b, config(b, b.TempDir()))
	for i := range 100 {
		register(b, s, nodeName(i), 64)
	}
	var done atomic.Int64
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() { // the agents: finish every assigned allocation immediately
		defer close(finished)
		for {
			ch := s.Store().Changed()
			var ups []fsm.AllocUpdate
			now := time.Now()
			for _, a := range s.Store().Snapshot().LiveAllocs() {
				if a.Status == model.AllocAssigned {
					ups = append(ups, fsm.AllocUpdate{AllocID: a.ID, Node: a.Node, Status: model.AllocExited, StartedAt: now, FinishedAt: now})
				}
			}
			if len(ups) > 0 {
				if err := s.UpdateAllocs(context.Background(), ups); err != nil {
					b.Error(err)
					return
				}
				done.Add(int64(len(ups)))
			}
			select {
			case <-ch:
			case <-stop:
				return
			}
		}
	}()
	job := *testkit.Job(0).Tasks(1).CPU(1).Build()
	b.SetParallelism(8)
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.SubmitJob(context.Background(), job); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for done.Load() < int64(b.N) && !b.Failed() {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	close(stop)
	<-finished
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/job")
}

func nodeName(i int) string { return "n" + string(rune('a'+i/26)) + string(rune('a'+i%26)) }
