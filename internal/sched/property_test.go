package sched

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// genSnapshot draws a small, messy cluster: ready, down and draining nodes,
// GPUs with gaps in their indices and GPU counts that disagree with the
// devices, labels, custom resources, live and terminal allocations that fill
// nodes up to (not beyond) capacity, and pending jobs with 0–3 groups,
// colliding priorities and submit times, constraints and the odd invalid job.
func genSnapshot(t *rapid.T) *Snapshot {
	s := &Snapshot{}
	nNodes := rapid.IntRange(0, 10).Draw(t, "nodes")
	for i := 0; i < nNodes; i++ {
		b := testkit.Node(fmt.Sprintf("n%02d", i)).
			MilliCPU(rapid.SampledFrom([]int64{500, 1000, 2000, 4000, 8000}).Draw(t, "cpu")).
			Mem(rapid.SampledFrom([]string{"1G", "2G", "8G", "16G"}).Draw(t, "mem"))
		switch rapid.IntRange(0, 3).Draw(t, "gpukind") {
		case 1:
			b.GPUs(rapid.IntRange(1, 4).Draw(t, "gpus"))
		case 2:
			b.GPUIndices(rapid.SliceOfNDistinct(rapid.IntRange(0, 7), 1, 4, rapid.ID[int]).Draw(t, "gpuidx")...)
		}
		if rapid.Bool().Draw(t, "scratch") {
			b.Scratch(rapid.SampledFrom([]string{"1G", "10G"}).Draw(t, "scratchsize"))
		}
		if rapid.IntRange(0, 3).Draw(t, "haslic") == 0 {
			b.Custom("lic", rapid.Int64Range(0, 2).Draw(t, "lic"))
		}
		b.Label("pool", rapid.SampledFrom([]string{"cpu", "gpu"}).Draw(t, "pool"))
		if rapid.Bool().Draw(t, "hasrack") {
			b.Label("rack", rapid.SampledFrom([]string{"r1", "r2"}).Draw(t, "rack"))
		}
		switch rapid.IntRange(0, 9).Draw(t, "status") {
		case 0:
			b.Down()
		case 1:
			b.Drain("maintenance")
		}
		n := b.Build()
		if rapid.IntRange(0, 9).Draw(t, "gpucountskew") == 0 {
			n.Capacity.GPUs = rapid.Int64Range(0, 5).Draw(t, "gpucount")
		}
		s.Nodes = append(s.Nodes, n)
	}

	// Live allocations that fit: fill each node with a few tasks.
	for _, n := range s.Nodes {
		free := n.Capacity.Copy()
		freeIdx := map[int]bool{}
		for _, g := range n.GPUs {
			freeIdx[g.Index] = true
		}
		for k := rapid.IntRange(0, 3).Draw(t, "allocs"); k > 0; k-- {
			r := model.Resources{
				MilliCPU:    rapid.SampledFrom([]int64{0, 250, 1000}).Draw(t, "acpu"),
				MemoryBytes: rapid.SampledFrom([]int64{0, 1 << 29, 1 << 30}).Draw(t, "amem"),
				GPUs:        rapid.Int64Range(0, 2).Draw(t, "agpu"),
			}
			var idx []int
			for _, g := range n.GPUs {
				if int64(len(idx)) < r.GPUs && freeIdx[g.Index] {
					idx = append(idx, g.Index)
				}
			}
			terminal := rapid.IntRange(0, 4).Draw(t, "terminal") == 0
			if !terminal && (int64(len(idx)) < r.GPUs || !free.Fits(r)) {
				continue
			}
			a := testkit.Alloc(model.JobID(1000+len(s.Allocs)), 0, n.Name).Resources(r).GPUIndices(idx...).Build()
			if terminal {
				a.Status = rapid.SampledFrom([]model.AllocStatus{model.AllocExited, model.AllocFailed, model.AllocLost}).Draw(t, "tstatus")
			} else {
				free = free.Sub(r)
				for _, g := range idx {
					freeIdx[g] = false
				}
			}
			s.Allocs = append(s.Allocs, a)
		}
	}

	nJobs := rapid.IntRange(0, 20).Draw(t, "jobs")
	for i := 1; i <= nJobs; i++ {
		b := testkit.Job(model.JobID(i)).
			Priority(rapid.IntRange(0, 2).Draw(t, "prio")).
			Submitted(testkit.Epoch.Add(time.Duration(rapid.IntRange(0, 3).Draw(t, "submit")) * time.Minute))
		groups := rapid.IntRange(1, 3).Draw(t, "groups")
		for g := 0; g < groups; g++ {
			b.Group(fmt.Sprintf("g%d", g)).
				Tasks(rapid.IntRange(0, 4).Draw(t, "count")).
				Resources(func() model.Resources {
					r := model.Resources{
						MilliCPU:    rapid.SampledFrom([]int64{0, 250, 500, 1000, 2000, 9000}).Draw(t, "cpu"),
						MemoryBytes: rapid.SampledFrom([]int64{0, 1 << 28, 1 << 30, 4 << 30}).Draw(t, "mem"),
					}
					if rapid.IntRange(0, 2).Draw(t, "wantgpu") == 0 {
						r.GPUs = rapid.Int64Range(1, 3).Draw(t, "gpu")
					}
					if rapid.IntRange(0, 4).Draw(t, "wantscratch") == 0 {
						r.ScratchBytes = 1 << 30
					}
					if rapid.IntRange(0, 4).Draw(t, "wantlic") == 0 {
						r.Custom = map[string]int64{"lic": rapid.Int64Range(0, 1).Draw(t, "lic")}
					}
					return r
				}())
			switch rapid.IntRange(0, 5).Draw(t, "constraint") {
			case 0:
				b.Constraint("pool", "gpu")
			case 1:
				b.Constraint("rack", rapid.SampledFrom([]string{"r1", "r3"}).Draw(t, "rack"))
			}
		}
		j := b.Build()
		s.Pending = append(s.Pending, j)
		if rapid.IntRange(0, 9).Draw(t, "dup") == 0 {
			s.Pending = append(s.Pending, j) // listed twice
		}
	}
	return s
}

// TestScheduleAgreesWithNaiveReference: the fast scheduler makes exactly the
// naive reference's placements and reason codes, and every plan satisfies the
// invariants.
func TestScheduleAgreesWithNaiveReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSnapshot(t)
		got := Schedule(s, testkit.Epoch, placementOnly)
		checkInvariants(t, s, got)

		want := naiveSchedule(s)
		if diff := cmp.Diff(want.Placements, got.Placements); diff != "" {
			t.Fatalf("placements differ from the naive reference (-naive +fast):\n%s", diff)
		}
		codes := map[model.JobID]string{}
		for id, r := range got.Reasons {
			codes[id] = r.Code
		}
		wantCodes := map[model.JobID]string{}
		for id, r := range want.Reasons {
			wantCodes[id] = r.Code
		}
		if diff := cmp.Diff(wantCodes, codes); diff != "" {
			t.Fatalf("reason codes differ from the naive reference (-naive +fast):\n%s", diff)
		}
	})
}

// TestScheduleIgnoresInputOrder: shuffling the snapshot's slices changes
// nothing in the plan, messages included.
func TestScheduleIgnoresInputOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSnapshot(t)
		want := Schedule(s, testkit.Epoch, Config{})
		shuffled := &Snapshot{
			Nodes:   rapid.Permutation(s.Nodes).Draw(t, "nodes order"),
			Allocs:  rapid.Permutation(s.Allocs).Draw(t, "allocs order"),
			Pending: rapid.Permutation(s.Pending).Draw(t, "pending order"),
		}
		got := Schedule(shuffled, testkit.Epoch, Config{})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("plan depends on input order (-original +shuffled):\n%s", diff)
		}
	})
}
