package sched

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// pl is shorthand for an expected placement.
func pl(job model.JobID, task int, node string, r model.Resources, gpus ...int) Placement {
	p := Placement{JobID: job, Group: "main", TaskIndex: task, Node: node, Resources: r}
	if len(gpus) > 0 {
		p.GPUIndices = gpus
	}
	return p
}

func res(cpu int64, mem string, gpus int64) model.Resources {
	return model.Resources{MilliCPU: cpu * 1000, MemoryBytes: testkit.Bytes(mem), GPUs: gpus}
}

func reason(code, msg string) model.Reason { return model.Reason{Code: code, Message: msg} }

// placementOnly runs the placement engine alone (first fit in priority
// order, no time, queues or reservations): TestSchedule and the naive
// reference pin down placement and the reasons about room.
var placementOnly = Config{firstFit: true}

func TestSchedule(t *testing.T) {
	t0 := testkit.Epoch
	cpu8 := testkit.Node("cpu8").CPU(8).Mem("16G")
	gpu2 := testkit.Node("gpu2").CPU(8).Mem("16G").GPUs(2)
	one := res(1, "1G", 0)

	tests := []struct {
		name    string
		nodes   []*model.Node
		allocs  []*model.Allocation
		pending []*model.Job
		want    *Plan
	}{
		{
			name:    "one job on one node",
			nodes:   []*model.Node{cpu8.Build()},
			pending: []*model.Job{testkit.Job(1).Build()},
			want:    &Plan{Placements: []Placement{pl(1, 0, "cpu8", one)}, Reasons: map[model.JobID]model.Reason{}},
		},
		{
			name:  "higher priority goes first when there is room for one",
			nodes: []*model.Node{cpu8.Build()},
			pending: []*model.Job{
				testkit.Job(1).CPU(6).Build(),
				testkit.Job(2).CPU(6).Priority(5).Build(),
			},
			want: &Plan{
				Placements: []Placement{pl(2, 0, "cpu8", res(6, "1G", 0))},
				Reasons: map[model.JobID]model.Reason{
					1: reason(model.ReasonResources, "needs 1 task of cpu=6 mem=1GiB; 0 fit now (short of cpu on 1 node)"),
				},
			},
		},
		{
			name:  "equal priority: earlier submit first, then lower ID",
			nodes: []*model.Node{cpu8.Build()},
			pending: []*model.Job{
				testkit.Job(3).CPU(4).Submitted(t0).Build(),
				testkit.Job(1).CPU(4).Submitted(t0.Add(time.Minute)).Build(),
				testkit.Job(2).CPU(4).Submitted(t0).Build(),
			},
			want: &Plan{
				Placements: []Placement{pl(2, 0, "cpu8", res(4, "1G", 0)), pl(3, 0, "cpu8", res(4, "1G", 0))},
				Reasons: map[model.JobID]model.Reason{
					1: reason(model.ReasonResources, "needs 1 task of cpu=4 mem=1GiB; 0 fit now (short of cpu on 1 node)"),
				},
			},
		},
		{
			name:  "a job that does not fit does not block lower ones",
			nodes: []*model.Node{cpu8.Build()},
			allocs: []*model.Allocation{
				testkit.Alloc(9, 0, "cpu8").CPU(4).Build(),
			},
			pending: []*model.Job{
				testkit.Job(1).CPU(6).Priority(9).Build(),
				testkit.Job(2).CPU(2).Build(),
			},
			want: &Plan{
				Placements: []Placement{pl(2, 0, "cpu8", res(2, "1G", 0))},
				Reasons: map[model.JobID]model.Reason{
					1: reason(model.ReasonResources, "needs 1 task of cpu=6 mem=1GiB; 0 fit now (short of cpu on 1 node)"),
				},
			},
		},
		{
			name: "best fit packs the fuller node",
			nodes: []*model.Node{
				testkit.Node("a").CPU(8).Mem("16G").Build(),
				testkit.Node("b").CPU(8).Mem("16G").Build(),
			},
			allocs:  []*model.Allocation{testkit.Alloc(9, 0, "b").CPU(6).Mem("8G").Build()},
			pending: []*model.Job{testkit.Job(1).CPU(2).Build()},
			want:    &Plan{Placements: []Placement{pl(1, 0, "b", res(2, "1G", 0))}, Reasons: map[model.JobID]model.Reason{}},
		},
		{
			name: "equal nodes: ties go to the first name, and tasks share a node",
			nodes: []*model.Node{
				testkit.Node("z").CPU(8).Mem("16G").Build(),
				testkit.Node("a").CPU(8).Mem("16G").Build(),
			},
			pending: []*model.Job{testkit.Job(1).Tasks(3).Build()},
			want: &Plan{
				Placements: []Placement{pl(1, 0, "a", one), pl(1, 1, "a", one), pl(1, 2, "a", one)},
				Reasons:    map[model.JobID]model.Reason{},
			},
		},
		{
			name:    "CPU-only task avoids a GPU node when a CPU node fits, even a looser one",
			nodes:   []*model.Node{gpu2.Build(), testkit.Node("big").CPU(64).Mem("256G").Build()},
			pending: []*model.Job{testkit.Job(1).Build()},
			want:    &Plan{Placements: []Placement{pl(1, 0, "big", one)}, Reasons: map[model.JobID]model.Reason{}},
		},
		{
			name:    "CPU-only task uses a GPU node when no CPU node fits",
			nodes:   []*model.Node{gpu2.Build(), testkit.Node("small").CPU(1).Mem("1G").Build()},
			pending: []*model.Job{testkit.Job(1).CPU(2).Build()},
			want:    &Plan{Placements: []Placement{pl(1, 0, "gpu2", res(2, "1G", 0))}, Reasons: map[model.JobID]model.Reason{}},
		},
		{
			name:  "GPU tasks get the lowest free indices, never held ones",
			nodes: []*model.Node{testkit.Node("g").CPU(16).Mem("64G").GPUs(4).Build()},
			allocs: []*model.Allocation{
				testkit.Alloc(9, 0, "g").GPUIndices(0, 2).Build(),
			},
			pending: []*model.Job{testkit.Job(1).GPUs(1).Tasks(2).Build()},
			want: &Plan{
				Placements: []Placement{pl(1, 0, "g", res(1, "1G", 1), 1), pl(1, 1, "g", res(1, "1G", 1), 3)},
				Reasons:    map[model.JobID]model.Reason{},
			},
		},
		{
			name:  "GPU devices with gaps in their indices",
			nodes: []*model.Node{testkit.Node("g").CPU(16).Mem("64G").GPUIndices(7, 3, 5).Build()},
			pending: []*model.Job{
				testkit.Job(1).GPUs(2).Build(),
				testkit.Job(2).GPUs(1).Build(),
			},
			want: &Plan{
				Placements: []Placement{pl(1, 0, "g", res(1, "1G", 2), 3, 5), pl(2, 0, "g", res(1, "1G", 1), 7)},
				Reasons:    map[model.JobID]model.Reason{},
			},
		},
		{
			name:  "terminal allocations hold nothing",
			nodes: []*model.Node{testkit.Node("g").CPU(2).Mem("2G").GPUs(1).Build()},
			allocs: []*model.Allocation{
				testkit.Alloc(9, 0, "g").CPU(2).GPUIndices(0).Status(model.AllocExited).Build(),
				testkit.Alloc(8, 0, "g").CPU(2).GPUIndices(0).Status(model.AllocLost).Build(),
			},
			pending: []*model.Job{testkit.Job(1).CPU(2).GPUs(1).Build()},
			want:    &Plan{Placements: []Placement{pl(1, 0, "g", res(2, "1G", 1), 0)}, Reasons: map[model.JobID]model.Reason{}},
		},
		{
			name:  "a multi-task job is all or nothing",
			nodes: []*model.Node{testkit.Node("a").CPU(2).Mem("8G").Build(), testkit.Node("b").CPU(1).Mem("8G").Build()},
			pending: []*model.Job{
				testkit.Job(1).Tasks(4).Build(),
				testkit.Job(2).Tasks(2).Build(),
			},
			want: &Plan{
				// b is the tighter fit for the first task; then only a has room.
				Placements: []Placement{pl(2, 0, "b", one), pl(2, 1, "a", one)},
				Reasons: map[model.JobID]model.Reason{
					// 4 tasks never fit on these nodes (a holds 2, b 1).
					1: reason(model.ReasonNoFit, "needs 4 tasks of cpu=1 mem=1GiB at once; the ready nodes could hold at most 3 even if empty"),
				},
			},
		},
		{
			name:  "groups that fit alone but not together",
			nodes: []*model.Node{testkit.Node("a").CPU(4).Mem("8G").Build()},
			pending: []*model.Job{
				testkit.Job(1).Group("ps").CPU(3).Group("worker").Tasks(2).CPU(1).Build(),
			},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonGang, "needs all 3 tasks at once (ps: 1 × cpu=3 mem=1GiB; worker: 2 × cpu=1 mem=1GiB); each group fits on its own now, but not all together"),
			}},
		},
		{
			name:  "a job too big for what is free leaves room for a smaller one of the same shape",
			nodes: []*model.Node{testkit.Node("a").CPU(4).Mem("16G").Build()},
			pending: []*model.Job{
				testkit.Job(1).Tasks(5).Build(),
				testkit.Job(2).Tasks(4).Build(),
			},
			want: &Plan{
				Placements: []Placement{pl(2, 0, "a", one), pl(2, 1, "a", one), pl(2, 2, "a", one), pl(2, 3, "a", one)},
				Reasons: map[model.JobID]model.Reason{
					// 5 tasks never fit on a 4-core node, so it is not waited for.
					1: reason(model.ReasonNoFit, "needs 5 tasks of cpu=1 mem=1GiB at once; the ready nodes could hold at most 4 even if empty"),
				},
			},
		},
		{
			name:  "a failed gang does not hide room from later jobs of its shapes",
			nodes: []*model.Node{testkit.Node("a").CPU(4).Mem("16G").Build()},
			pending: []*model.Job{
				testkit.Job(1).Group("ps").CPU(3).Group("worker").Tasks(2).Build(),
				testkit.Job(2).Tasks(2).Build(),
			},
			want: &Plan{
				Placements: []Placement{pl(2, 0, "a", one), pl(2, 1, "a", one)},
				Reasons: map[model.JobID]model.Reason{
					1: reason(model.ReasonResources, `group "ps": needs 1 task of cpu=3 mem=1GiB; 0 fit now (short of cpu on 1 node)`),
				},
			},
		},
		{
			name: "task indices run over groups in group order",
			nodes: []*model.Node{
				testkit.Node("a").CPU(8).Mem("16G").Build(),
			},
			pending: []*model.Job{testkit.Job(1).Group("ps").Group("worker").Tasks(2).CPU(2).Build()},
			want: &Plan{
				Placements: []Placement{
					{JobID: 1, Group: "ps", TaskIndex: 0, Node: "a", Resources: one},
					{JobID: 1, Group: "worker", TaskIndex: 1, Node: "a", Resources: res(2, "1G", 0)},
					{JobID: 1, Group: "worker", TaskIndex: 2, Node: "a", Resources: res(2, "1G", 0)},
				},
				Reasons: map[model.JobID]model.Reason{},
			},
		},
		{
			name: "down and draining nodes receive nothing",
			nodes: []*model.Node{
				testkit.Node("a").CPU(8).Mem("16G").Down().Build(),
				testkit.Node("b").CPU(8).Mem("16G").Down().Build(),
				testkit.Node("c").CPU(8).Mem("16G").Drain("maintenance").Build(),
			},
			pending: []*model.Job{testkit.Job(1).Build(), testkit.Job(2).Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonNoNodes, "no schedulable nodes (2 down, 1 draining)"),
				2: reason(model.ReasonNoNodes, "no schedulable nodes (2 down, 1 draining)"),
			}},
		},
		{
			name:    "no nodes at all",
			pending: []*model.Job{testkit.Job(1).Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonNoNodes, "no schedulable nodes: no node has registered"),
			}},
		},
		{
			name: "constraints pick the labelled node",
			nodes: []*model.Node{
				testkit.Node("a").CPU(8).Mem("16G").Label("pool", "cpu").Build(),
				testkit.Node("b").CPU(8).Mem("16G").Label("pool", "gpu").Label("rack", "r1").Build(),
			},
			pending: []*model.Job{testkit.Job(1).Constraint("pool", "gpu").Build()},
			want:    &Plan{Placements: []Placement{pl(1, 0, "b", one)}, Reasons: map[model.JobID]model.Reason{}},
		},
		{
			name: "no ready node has the label",
			nodes: []*model.Node{
				testkit.Node("a").CPU(8).Mem("16G").Label("pool", "cpu").Build(),
				testkit.Node("b").CPU(8).Mem("16G").Label("pool", "gpu").Down().Build(),
			},
			pending: []*model.Job{testkit.Job(1).Constraint("pool", "gpu").Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonConstraints, "no ready node has label pool=gpu (1 matching node down or draining)"),
			}},
		},
		{
			name: "labels that exist, but never together",
			nodes: []*model.Node{
				testkit.Node("a").CPU(8).Mem("16G").Label("pool", "gpu").Label("rack", "r1").Build(),
				testkit.Node("b").CPU(8).Mem("16G").Label("pool", "cpu").Label("rack", "r2").Build(),
			},
			pending: []*model.Job{testkit.Job(1).Constraint("pool", "gpu").Constraint("rack", "r2").Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonConstraints, "no ready node has all of the labels pool=gpu, rack=r2"),
			}},
		},
		{
			name:    "no node could ever hold a task",
			nodes:   []*model.Node{cpu8.Build(), testkit.Node("small").CPU(2).Mem("64G").Build()},
			pending: []*model.Job{testkit.Job(1).CPU(64).Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonNoFit, "each task needs cpu=64 mem=1GiB; the largest ready node has cpu=8 mem=16GiB (cpu8)"),
			}},
		},
		{
			name:    "no node could ever hold a task: each dimension fits somewhere, never together",
			nodes:   []*model.Node{testkit.Node("fat").CPU(2).Mem("64G").Build(), testkit.Node("wide").CPU(32).Mem("4G").Build()},
			pending: []*model.Job{testkit.Job(1).CPU(16).Mem("32G").Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonNoFit, "each task needs cpu=16 mem=32GiB; no ready node has all of it at once (closest: fat with cpu=2 mem=64GiB)"),
			}},
		},
		{
			name: "no node with the label could ever hold a task",
			nodes: []*model.Node{
				testkit.Node("g").CPU(8).Mem("16G").GPUs(2).Label("pool", "gpu").Build(),
				testkit.Node("g8").CPU(8).Mem("16G").GPUs(8).Label("pool", "other").Build(),
			},
			pending: []*model.Job{testkit.Job(1).GPUs(4).Constraint("pool", "gpu").Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonNoFit, "each task needs cpu=1 mem=1GiB gpu=4; the largest ready node with label pool=gpu has cpu=8 mem=16GiB gpu=2 (g)"),
			}},
		},
		{
			name: "GPU capacity without reported devices cannot be used",
			nodes: func() []*model.Node {
				n := testkit.Node("g").CPU(8).Mem("16G").Build()
				n.Capacity.GPUs = 2 // the agent counted GPUs but listed no devices
				return []*model.Node{n}
			}(),
			pending: []*model.Job{testkit.Job(1).Resources(model.Resources{MilliCPU: 1000, GPUs: 1}).Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonNoFit, "each task needs cpu=1 mem=0B gpu=1; the largest ready node has cpu=8 mem=16GiB (g)"),
			}},
		},
		{
			name:  "resources message lists where there is room",
			nodes: []*model.Node{gpu2.Build(), testkit.Node("g1").CPU(8).Mem("16G").GPUs(1).Build(), testkit.Node("g4").CPU(8).Mem("16G").GPUs(4).Build()},
			allocs: []*model.Allocation{
				testkit.Alloc(9, 0, "g4").GPUIndices(0, 1, 2, 3).Build(),
				testkit.Alloc(9, 1, "gpu2").GPUIndices(1).Build(),
			},
			pending: []*model.Job{testkit.Job(1).GPUs(1).Tasks(4).Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonResources, "needs 4 tasks of cpu=1 mem=1GiB gpu=1; 2 fit now (free: g1 gpu=1, gpu2 gpu=1)"),
			}},
		},
		{
			// Room for 2, 3, 3, 1, 3 and 2 tasks: the three roomiest, the
			// first by name among equals, then a count of the rest.
			name: "resources message names the three roomiest nodes",
			nodes: func() []*model.Node {
				var ns []*model.Node
				for i := range 6 {
					ns = append(ns, testkit.Node(fmt.Sprintf("n%d", i)).CPU(8).Mem("16G").Build())
				}
				return ns
			}(),
			allocs: func() []*model.Allocation {
				var as []*model.Allocation
				for i, free := range []int64{2, 3, 3, 1, 3, 2} {
					as = append(as, testkit.Alloc(9, i, fmt.Sprintf("n%d", i)).MilliCPU((8-free)*1000).Build())
				}
				return as
			}(),
			pending: []*model.Job{testkit.Job(1).Tasks(15).Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonResources, "needs 15 tasks of cpu=1 mem=1GiB; 14 fit now (free: n1 cpu=3, n2 cpu=3, n4 cpu=3, 3 more nodes)"),
			}},
		},
		{
			name:  "custom resources are counted",
			nodes: []*model.Node{testkit.Node("a").CPU(8).Mem("16G").Custom("licence", 2).Build(), cpu8.Build()},
			pending: []*model.Job{
				testkit.Job(1).Custom("licence", 1).Tasks(2).Build(),
				testkit.Job(2).Custom("licence", 1).Build(),
			},
			want: &Plan{
				Placements: []Placement{
					pl(1, 0, "a", model.Resources{MilliCPU: 1000, MemoryBytes: 1 << 30, Custom: map[string]int64{"licence": 1}}),
					pl(1, 1, "a", model.Resources{MilliCPU: 1000, MemoryBytes: 1 << 30, Custom: map[string]int64{"licence": 1}}),
				},
				Reasons: map[model.JobID]model.Reason{
					2: reason(model.ReasonResources, "needs 1 task of cpu=1 mem=1GiB licence=1; 0 fit now (short of licence on 1 node)"),
				},
			},
		},
		{
			name:    "a job listed twice is placed once",
			nodes:   []*model.Node{cpu8.Build()},
			pending: func() []*model.Job { j := testkit.Job(1).Build(); return []*model.Job{j, j} }(),
			want:    &Plan{Placements: []Placement{pl(1, 0, "cpu8", one)}, Reasons: map[model.JobID]model.Reason{}},
		},
		{
			name:    "a job with no tasks stays pending with a reason",
			nodes:   []*model.Node{cpu8.Build()},
			pending: []*model.Job{testkit.Job(1).Tasks(0).Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonNoFit, "job has no tasks"),
			}},
		},
		{
			name:    "a group in a multi-group job is named in the reason",
			nodes:   []*model.Node{cpu8.Build()},
			pending: []*model.Job{testkit.Job(1).Group("a").Group("b").CPU(9).Build()},
			want: &Plan{Reasons: map[model.JobID]model.Reason{
				1: reason(model.ReasonNoFit, `group "b": each task needs cpu=9 mem=1GiB; the largest ready node has cpu=8 mem=16GiB (cpu8)`),
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := &Snapshot{Nodes: tc.nodes, Allocs: tc.allocs, Pending: tc.pending}
			got := Schedule(snap, t0, placementOnly)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Schedule() plan mismatch (-want +got):\n%s", diff)
			}
			checkInvariants(t, snap, got)
		})
	}
}

func TestScheduleDoesNotMutateSnapshot(t *testing.T) {
	snap := &Snapshot{
		Nodes:   []*model.Node{testkit.Node("b").CPU(4).Mem("8G").GPUs(2).Build(), testkit.Node("a").CPU(4).Mem("8G").Build()},
		Allocs:  []*model.Allocation{testkit.Alloc(7, 0, "b").GPUIndices(1).Build()},
		Pending: []*model.Job{testkit.Job(2).Tasks(3).Build(), testkit.Job(1).GPUs(1).Custom("x", 0).Build()},
	}
	before := deepCopy(snap)
	Schedule(snap, testkit.Epoch, Config{})
	if diff := cmp.Diff(before, snap); diff != "" {
		t.Errorf("Schedule changed its input (-before +after):\n%s", diff)
	}
}

func deepCopy(s *Snapshot) *Snapshot {
	c := &Snapshot{}
	for _, n := range s.Nodes {
		c.Nodes = append(c.Nodes, n.Copy())
	}
	for _, a := range s.Allocs {
		c.Allocs = append(c.Allocs, a.Copy())
	}
	for _, j := range s.Pending {
		c.Pending = append(c.Pending, j.Copy())
	}
	for _, q := range s.Queues {
		qc := *q
		c.Queues = append(c.Queues, &qc)
	}
	return c
}

// TestManyShapesEvictIndexes uses more distinct task shapes (sizes and
// constraint sets) than the pass keeps indexes for, interleaved, and checks
// the result against the naive reference.
func TestManyShapesEvictIndexes(t *testing.T) {
	var nodes []*model.Node
	for i := 0; i < 40; i++ {
		nodes = append(nodes, testkit.Node(fmt.Sprintf("n%02d", i)).CPU(8).Mem("32G").
			Label("a", fmt.Sprint(i%7)).Label("b", fmt.Sprint(i%11)).Build())
	}
	// Enough plain nodes of two kinds for scans to go by equivalence
	// classes (classes.go).
	for i := 0; i < 200; i++ {
		b := testkit.Node(fmt.Sprintf("p%03d", i)).CPU(4).Mem("16G").Label("a", fmt.Sprint(i%7)).Label("b", "x")
		if i%3 == 0 {
			b.CPU(16).GPUs(2)
		}
		nodes = append(nodes, b.Build())
	}
	var jobs []*model.Job
	maxIndexes := maxIndexes(len(nodes))
	for i := 1; i <= 3*maxIndexes; i++ {
		jobs = append(jobs, testkit.Job(model.JobID(i)).MilliCPU(int64(100+(i%13)*300)).Tasks(1+i%3).
			Constraint("a", fmt.Sprint(i%7)).Constraint("b", fmt.Sprint((i/7)%11)).Build())
	}
	for i := 1; i <= 20*maxIndexes; i++ {
		b := testkit.Job(model.JobID(1000 + i)).MilliCPU(int64(100 + (i%97)*37)).Tasks(1 + i%4).Priority(i % 3)
		if i%5 == 0 {
			b.GPUs(1)
		}
		if i%4 == 0 {
			b.Constraint("a", fmt.Sprint(i%7))
		}
		jobs = append(jobs, b.Build())
	}
	snap := &Snapshot{Nodes: nodes, Pending: jobs}
	got := Schedule(snap, testkit.Epoch, placementOnly)
	want := naiveSchedule(snap)
	if diff := cmp.Diff(want.Placements, got.Placements); diff != "" {
		t.Errorf("placements differ from the naive reference (-naive +fast):\n%s", diff)
	}
	if len(got.Placements) == 0 {
		t.Errorf("nothing placed: the test exercises nothing")
	}
	checkInvariants(t, snap, got)
}
