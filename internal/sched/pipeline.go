package sched

import (
	"math/bits"

	"github.com/durehq/dure/internal/model"
)

// The placement policy is two ordered lists of plain functions, chosen here
// in code (STYLE.md: no plugin framework before there are plugins). To change
// the policy, edit these lists; README.md describes each entry.

// staticFilters say whether a schedulable node could ever hold one task of a
// shape, whatever else runs there. They run once per node per shape per pass
// (when the shape's candidate index is built), never per placement.
var staticFilters = []func(n *nodeState, s *shape) bool{
	matchesConstraints,
	matchesFlavor,
	capacityEverEnough,
}

// A scorer rates a node for one task of a shape that fits there; lower is
// better. A node's key is the weighted sum of all scores; ties go to the node
// whose name sorts first.
type scorer struct {
	weight int64
	score  func(n *nodeState, s *shape) int64
}

// Weights, largest first, so that each scorer decides before the next one
// breaks its ties: bestFit is within ±4×bestFitScale (2²²), avoidFreeNow
// within 2²² × 2²³ = 2⁴⁵.
const (
	keepGPUWeight       = 1 << 50
	avoidReservedWeight = 1 << 46
	avoidFreeNowWeight  = 1 << 23
)

// scorers: a CPU-only task lands on a GPU node only when no CPU node fits;
// new work avoids nodes held by reservations; a reservation avoids what is
// free now; among the rest, best fit (or worst fit for spread jobs).
var scorers = []scorer{
	{weight: keepGPUWeight, score: keepGPUNodes},
	{weight: avoidReservedWeight, score: avoidReserved},
	{weight: avoidFreeNowWeight, score: avoidFreeNow},
	{weight: 1, score: bestFit},
}

// matchesFlavor: the node has the GPU flavor the shape is limited to.
func matchesFlavor(n *nodeState, s *shape) bool {
	return s.flavor == "" || n.flavor == s.flavor
}

// avoidReserved is 1 on a node that a reservation holds something on: work
// that starts now goes elsewhere when it can, so it rarely has to be
// checked against the reservation (and backfill keeps the reserved nodes
// whole).
func avoidReserved(n *nodeState, _ *shape) int64 {
	if n.reserved > 0 {
		return 1
	}
	return 0
}

// avoidFreeNow is, when planning a reservation on a future state, the
// node's free share now: the reservation takes nodes that are busy now
// first, so what is free now stays free for backfill (textbook EASY's
// "extra" processors). 0 in the present state.
func avoidFreeNow(n *nodeState, _ *shape) int64 { return n.nowShare }

// scorersKey combines the scorers into one comparable number: the
// definition of a node's key.
func scorersKey(n *nodeState, s *shape) int64 {
	var k int64
	for _, sc := range scorers {
		k += sc.weight * sc.score(n, s)
	}
	return k
}

// nodeKey is scorersKey for the scorers listed above, written out: the
// indexes compute millions of keys per pass, and bestFit's task share
// (four divisions) depends only on the shape and the node's capacity, so
// the shape caches it per capacity class. TestNodeKeyIsTheScorers holds
// the two equal; change both together.
func nodeKey(n *nodeState, s *shape) int64 {
	var k int64
	if s.req.GPUs == 0 && n.capGPU > 0 {
		k += keepGPUWeight
	}
	if n.reserved > 0 {
		k += avoidReservedWeight
	}
	k += avoidFreeNowWeight * n.nowShare
	f := n.freeShare - s.taskShare(n)
	if s.spread {
		f = -f
	}
	return k + f
}

// taskShare is R in bestFit: one task's share of n's capacity.
func (s *shape) taskShare(n *nodeState) int64 {
	c := n.capClass
	if int(c) < len(s.rShare) && s.rShare[c] >= 0 {
		return s.rShare[c]
	}
	r := &s.req
	v := share(r.MilliCPU, n.capCPU) + share(r.MemoryBytes, n.capMem) + share(r.GPUs, n.capGPU) + share(r.ScratchBytes, n.capScratch)
	if int(c) >= len(s.rShare) {
		grown := make([]int64, c+1)
		copy(grown, s.rShare)
		for i := len(s.rShare); i < len(grown); i++ {
			grown[i] = -1
		}
		s.rShare = grown
	}
	s.rShare[c] = v
	return v
}

// matchesConstraints: the node carries every label key=value the group asks
// for.
// The answer is precomputed per pass and constraint set (shape.match).
func matchesConstraints(n *nodeState, s *shape) bool {
	return s.match == nil || s.match[n.index]
}

func hasLabels(n *model.Node, want map[string]string) bool {
	for k, v := range want {
		if got, ok := n.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// capacityEverEnough: an empty node would hold one task (GPU count capped by
// the devices the agent reported).
func capacityEverEnough(n *nodeState, s *shape) bool {
	r := &s.req
	if r.MilliCPU > n.capCPU || r.MemoryBytes > n.capMem || r.GPUs > n.capGPU || r.ScratchBytes > n.capScratch {
		return false
	}
	if len(r.Custom) == 0 {
		return true
	}
	for k, v := range r.Custom {
		if v > n.node.Capacity.Custom[k] {
			return false
		}
	}
	return true
}

// keepGPUNodes is 1 when a task that needs no GPU would sit on a node that
// has GPUs: GPU nodes are scarce and kept for GPU work.
func keepGPUNodes(n *nodeState, s *shape) int64 {
	if s.req.GPUs == 0 && n.hasGPUs() {
		return 1
	}
	return 0
}

// bestFitScale is the resolution of one dimension's share in bestFit.
const bestFitScale = 1 << 20

// bestFit approximates the free capacity the node would have left after the
// task, as fractions of the node's capacity summed over cpu, memory, GPUs and
// scratch: the node's free share F minus the task's share of the node's
// capacity R (each dimension in [0, bestFitScale], rounded down). Packing
// tasks tightly leaves whole nodes free for big jobs. F is kept on the node
// (nodeState.freeShare) so it is computed once per change, not per shape.
// Integer arithmetic keeps it exact and identical on every platform.
func bestFit(n *nodeState, s *shape) int64 {
	r := &s.req
	f := n.freeShare - share(r.MilliCPU, n.capCPU) - share(r.MemoryBytes, n.capMem) -
		share(r.GPUs, n.capGPU) - share(r.ScratchBytes, n.capScratch)
	if s.spread {
		return -f // spread: the emptiest node first
	}
	return f
}

// freeShareOf is F for a node: its free amounts as shares of its capacity.
func freeShareOf(n *nodeState) int64 {
	return share(n.cpu, n.capCPU) + share(n.mem, n.capMem) +
		share(min(n.gpu, n.freeSlots), n.capGPU) + share(n.scratch, n.capScratch)
}

// share returns amount/capacity scaled to bestFitScale, clamped to the range.
func share(amount, capacity int64) int64 {
	if capacity <= 0 || amount <= 0 {
		return 0
	}
	if amount >= capacity {
		return bestFitScale
	}
	hi, lo := bits.Mul64(uint64(amount), bestFitScale)
	q, _ := bits.Div64(hi, lo, uint64(capacity)) // hi < capacity since amount < capacity
	return int64(q)
}
