package sched

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

func TestComputeFree(t *testing.T) {
	nodes := []*model.Node{
		testkit.Node("g").CPU(8).Mem("16G").GPUIndices(0, 1, 3).Custom("lic", 2).Build(),
		testkit.Node("down").CPU(8).Mem("16G").Down().Build(),
		testkit.Node("drained").CPU(8).Mem("16G").Drain("disk").Build(),
	}
	allocs := []*model.Allocation{
		testkit.Alloc(1, 0, "g").CPU(2).Mem("4G").GPUIndices(1).Custom("lic", 1).Build(),
		testkit.Alloc(1, 1, "g").MilliCPU(500).Mem("1G").Build(),
		testkit.Alloc(2, 0, "g").CPU(4).GPUIndices(0).Status(model.AllocExited).Build(),
		testkit.Alloc(3, 0, "down").CPU(1).Build(),
	}
	got := ComputeFree(nodes, allocs)
	want := map[string]*NodeFree{
		"g": {
			Node:     nodes[0],
			Free:     model.Resources{MilliCPU: 5500, MemoryBytes: 11 << 30, GPUs: 2, Custom: map[string]int64{"lic": 1}},
			FreeGPUs: []int{0, 3},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ComputeFree mismatch (-want +got):\n%s", diff)
	}
}

func TestVerifyJob(t *testing.T) {
	nodes := []*model.Node{
		testkit.Node("a").CPU(4).Mem("8G").GPUs(2).Build(),
		testkit.Node("b").CPU(2).Mem("8G").Build(),
		testkit.Node("off").CPU(64).Mem("8G").Drain("x").Build(),
	}
	allocs := []*model.Allocation{testkit.Alloc(9, 0, "a").CPU(1).GPUIndices(0).Build()}
	gpu1 := res(1, "1G", 1)
	tests := []struct {
		name    string
		ps      []Placement
		wantErr error
		wantMsg string // substring of the error
	}{
		{name: "nothing to verify", ps: nil},
		{name: "fits", ps: []Placement{pl(1, 0, "a", gpu1, 1), pl(1, 1, "b", res(2, "1G", 0))}},
		{
			name:    "second task overflows the node the first one used",
			ps:      []Placement{pl(1, 0, "b", res(2, "1G", 0)), pl(1, 1, "b", res(1, "1G", 0))},
			wantErr: ErrStale,
			wantMsg: `job 1 task 1 on node "b": needs cpu=1 mem=1GiB but only cpu=0 mem=7GiB is free (short of cpu)`,
		},
		{
			name:    "GPU held by a live allocation",
			ps:      []Placement{pl(1, 0, "a", gpu1, 0)},
			wantErr: ErrStale,
			wantMsg: "GPU 0 is not free (free: 1)",
		},
		{
			name:    "GPU that does not exist",
			ps:      []Placement{pl(1, 0, "b", gpu1, 5)},
			wantErr: ErrStale,
			wantMsg: `needs cpu=1 mem=1GiB gpu=1 but only cpu=2 mem=8GiB is free (short of gpu)`,
		},
		{
			name:    "GPU index the node does not have",
			ps:      []Placement{pl(1, 0, "a", gpu1, 5)},
			wantErr: ErrStale,
			wantMsg: "GPU 5 is not free (free: 1)",
		},
		{
			name:    "draining node",
			ps:      []Placement{pl(1, 0, "off", res(1, "1G", 0))},
			wantErr: ErrStale,
			wantMsg: `node "off": node is unknown, down or draining`,
		},
		{
			name:    "same GPU twice in one job",
			ps:      []Placement{pl(1, 0, "a", res(1, "1G", 1), 1), pl(1, 1, "a", res(1, "1G", 1), 1)},
			wantErr: ErrStale, // the first claim took it, so it is no longer free
			wantMsg: "needs cpu=1 mem=1GiB gpu=1 but only cpu=2 mem=6GiB is free (short of gpu)",
		},
		{
			name:    "GPU count and indices disagree",
			ps:      []Placement{pl(1, 0, "a", res(1, "1G", 2), 1)},
			wantErr: ErrMalformed,
			wantMsg: "requests gpu=2 but names 1 GPU indices",
		},
		{
			name:    "mixed jobs",
			ps:      []Placement{pl(1, 0, "b", one()), pl(2, 1, "b", one())},
			wantErr: ErrMalformed,
			wantMsg: "placements mix jobs 1 and 2",
		},
		{
			name:    "task placed twice",
			ps:      []Placement{pl(1, 0, "b", one()), pl(1, 0, "b", one())},
			wantErr: ErrMalformed,
			wantMsg: "task placed twice",
		},
		{
			name:    "negative request",
			ps:      []Placement{pl(1, 0, "b", model.Resources{MemoryBytes: -1})},
			wantErr: ErrMalformed,
			wantMsg: "memory must not be negative",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			free := ComputeFree(nodes, allocs)
			before := ComputeFree(nodes, allocs)
			err := VerifyJob(free, tc.ps)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("VerifyJob() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("VerifyJob() = %v, want %v containing %q", err, tc.wantErr, tc.wantMsg)
			}
			if diff := cmp.Diff(before, free); diff != "" {
				t.Errorf("a rejected job changed free (-before +after):\n%s", diff)
			}
		})
	}
}

func TestVerifyJobSubtractsOnSuccess(t *testing.T) {
	nodes := []*model.Node{testkit.Node("a").CPU(4).Mem("8G").GPUs(4).Build()}
	free := ComputeFree(nodes, nil)
	if err := VerifyJob(free, []Placement{pl(1, 0, "a", res(1, "1G", 2), 0, 2)}); err != nil {
		t.Fatalf("first job: %v", err)
	}
	want := &NodeFree{Node: nodes[0], Free: model.Resources{MilliCPU: 3000, MemoryBytes: 7 << 30, GPUs: 2}, FreeGPUs: []int{1, 3}}
	if diff := cmp.Diff(want, free["a"]); diff != "" {
		t.Errorf("free after the first job (-want +got):\n%s", diff)
	}
	// The next job of the same plan sees what the first one left.
	err := VerifyJob(free, []Placement{pl(2, 0, "a", res(1, "1G", 1), 2)})
	if !errors.Is(err, ErrStale) {
		t.Errorf("second job reusing GPU 2: got %v, want ErrStale", err)
	}
}

func one() model.Resources { return res(1, "1G", 0) }

// TestNodeKeyIsTheScorers holds the written-out node key to the scorers
// list it stands for, over random nodes, states and shapes.
func TestNodeKeyIsTheScorers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var nodes []*model.Node
	for i := 0; i < 40; i++ {
		b := testkit.Node(fmt.Sprintf("n%02d", i)).CPU(int(1 + rng.IntN(64))).Mem(fmt.Sprintf("%dG", 1+rng.IntN(512)))
		if rng.IntN(3) == 0 {
			b.GPUs(1 + rng.IntN(8))
		}
		nodes = append(nodes, b.Build())
	}
	p := newPass(nodes, nil)
	for trial := 0; trial < 2000; trial++ {
		nd := &p.nodes[rng.IntN(len(p.nodes))]
		nd.cpu = rng.Int64N(nd.capCPU + 1)
		nd.mem = rng.Int64N(nd.capMem + 1)
		nd.gpu = rng.Int64N(nd.capGPU + 1)
		nd.freeSlots = rng.Int64N(nd.capGPU + 1)
		nd.reserved = int32(rng.IntN(2))
		nd.nowShare = rng.Int64N(4 * bestFitScale)
		nd.refreshShare()
		g := testkit.Job(1).MilliCPU(rng.Int64N(8000)).Mem(fmt.Sprintf("%dM", rng.IntN(64000))).GPUs(rng.IntN(3)).Build().Groups[0]
		s := p.shapeFor(&g, "", rng.IntN(4) == 0)
		if got, want := nodeKey(nd, s), scorersKey(nd, s); got != want {
			t.Fatalf("node %s (%+v), shape %v spread=%v: nodeKey %d, scorers say %d", nd.name, *nd, s.req, s.spread, got, want)
		}
	}
}

// TestPassesStaticIsTheFilters holds the written-out static filters to the
// list they stand for, over random nodes and shapes (constraints, flavors,
// custom resources).
func TestPassesStaticIsTheFilters(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var nodes []*model.Node
	for i := 0; i < 40; i++ {
		b := testkit.Node(fmt.Sprintf("n%02d", i)).CPU(int(1+rng.IntN(64))).Mem(fmt.Sprintf("%dG", 1+rng.IntN(512))).Label("rack", fmt.Sprintf("r%d", rng.IntN(3)))
		if rng.IntN(3) == 0 {
			b.GPUs(1+rng.IntN(8)).Label("gpu.model", []string{"H100", "A100"}[rng.IntN(2)])
		}
		if rng.IntN(4) == 0 {
			b.Custom("fpga", int64(rng.IntN(3)))
		}
		nodes = append(nodes, b.Build())
	}
	p := newPass(nodes, nil)
	passed, failed := 0, 0
	for trial := 0; trial < 2000; trial++ {
		nd := &p.nodes[rng.IntN(len(p.nodes))]
		jb := testkit.Job(1).MilliCPU(rng.Int64N(80000)).Mem(fmt.Sprintf("%dM", rng.IntN(640000))).GPUs(rng.IntN(3))
		if rng.IntN(3) == 0 {
			jb.Constraint("rack", fmt.Sprintf("r%d", rng.IntN(3)))
		}
		if rng.IntN(4) == 0 {
			jb.Custom("fpga", int64(rng.IntN(3)))
		}
		g := jb.Build().Groups[0]
		flavor := ""
		if g.Resources.GPUs > 0 && rng.IntN(2) == 0 {
			flavor = []string{"H100", "A100"}[rng.IntN(2)]
		}
		s := p.shapeFor(&g, flavor, false)
		got, want := passesStatic(nd, s), staticFiltersPass(nd, s)
		if got != want {
			t.Fatalf("node %s, shape %v %v flavor %q: passesStatic %v, the filters say %v", nd.name, s.req, s.constraints, s.flavor, got, want)
		}
		if want {
			passed++
		} else {
			failed++
		}
	}
	if passed == 0 || failed == 0 {
		t.Fatalf("draws never exercise both answers (%d pass, %d fail)", passed, failed)
	}
}

// TestShapeIndexKeepsItsHeap: removing entries anywhere in a shape index,
// re-adding them and changing keys in random order keep it a heap whose
// positions are right, with the least (key, node) on top.
func TestShapeIndexKeepsItsHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n = 300
	ix := &shapeIndex{pos: make([]int32, n), key: make([]int64, n)}
	for i := range n {
		ix.key[i] = rng.Int64N(50) // ties: the node breaks them
		ix.pos[i] = int32(len(ix.heap))
		ix.heap = append(ix.heap, int32(i))
	}
	for i := len(ix.heap)/2 - 1; i >= 0; i-- {
		ix.down(i)
	}
	for step := 0; step < 20000; step++ {
		v := int32(rng.IntN(n))
		switch at := ix.pos[v]; {
		case at < 0:
			ix.key[v] = rng.Int64N(50)
			ix.pos[v] = int32(len(ix.heap))
			ix.heap = append(ix.heap, v)
			ix.up(len(ix.heap) - 1)
		case rng.IntN(2) == 0:
			ix.remove(int(at))
		default:
			old := ix.key[v]
			ix.key[v] = rng.Int64N(50)
			if ix.key[v] < old {
				ix.up(int(at))
			} else {
				ix.down(int(at))
			}
		}
		in := 0
		for i, x := range ix.heap {
			if ix.pos[x] != int32(i) {
				t.Fatalf("step %d: node %d at %d, pos says %d", step, x, i, ix.pos[x])
			}
			if i > 0 && ix.less(x, ix.heap[(i-1)/2]) {
				t.Fatalf("step %d: node %d at %d sorts before its parent", step, x, i)
			}
		}
		for v := range n {
			if ix.pos[v] >= 0 {
				in++
			}
		}
		if in != len(ix.heap) {
			t.Fatalf("step %d: %d nodes have a position, the heap holds %d", step, in, len(ix.heap))
		}
	}
}
