package sched

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/durehq/dure/internal/model"
)

// nodeState is one schedulable node during a pass: its capacity and what is
// still free. Plain int64 fields rather than model.Resources keep the fit
// check and the best-fit score free of map work in the common case (no
// custom resources).
type nodeState struct {
	node  *model.Node
	name  string
	index int32 // position in pass.nodes (name order)

	// Capacity. capGPU is the usable GPU count: Capacity.GPUs, but never
	// more than the devices the agent reported (a GPU task needs indices).
	capCPU, capMem, capGPU, capScratch int64

	// Free amounts. gpu counts like the other dimensions
	// (Capacity.GPUs - held); freeSlots counts unheld device indices. A GPU
	// task needs both.
	cpu, mem, gpu, scratch int64
	custom                 map[string]int64 // free custom resources; nil if none

	gpuIdx    []int  // device indices, ascending, unique
	gpuUsed   []bool // parallel to gpuIdx
	freeSlots int64

	freeShare int64 // F in bestFit; refreshShare after every change

	flavor string // GPU flavor (see nodeFlavor); "" if none
	// capClass numbers the node's (capCPU, capMem, capGPU, capScratch):
	// nodes of one class give a task the same share (shape.taskShare).
	capClass int32
	// reserved counts reservations that hold something on this node: new
	// work avoids such nodes when others fit (avoidReserved).
	reserved int32
	// nowShare is, in a future state, the node's free share now: the
	// reservation planner prefers nodes that are busy now (avoidFreeNow),
	// leaving what is free now to backfill. 0 in the present state.
	nowShare int64
}

// copy returns an independent copy of the node state.
// Without devices, the copy has no device slots (gpuUsed nil).
func (n *nodeState) copy(devices bool) nodeState {
	c := *n
	if n.custom != nil {
		c.custom = make(map[string]int64, len(n.custom))
		for k, v := range n.custom {
			c.custom[k] = v
		}
	}
	c.gpuUsed = nil
	if devices {
		c.gpuUsed = append([]bool(nil), n.gpuUsed...)
	}
	return c
}

// nodeFlavor is a node's GPU flavor: its label gpu.model, or else the model
// of its first GPU device.
func nodeFlavor(n *model.Node) string {
	if f := n.Labels[FlavorLabel("gpu")]; f != "" {
		return f
	}
	if len(n.GPUs) > 0 {
		return n.GPUs[0].Model
	}
	return ""
}

// FlavorLabel is the node label that gives a resource's flavor:
// "<resource>.model" (gpu.model=H100 makes the node's GPUs gpu/H100).
func FlavorLabel(resource string) string { return resource + ".model" }

func (n *nodeState) refreshShare() { n.freeShare = freeShareOf(n) }

// hasGPUs reports whether the node has usable GPUs (kept for GPU work).
func (n *nodeState) hasGPUs() bool { return n.capGPU > 0 }

// freeResources renders the free amounts as model.Resources.
func (n *nodeState) freeResources() model.Resources {
	r := model.Resources{MilliCPU: n.cpu, MemoryBytes: n.mem, GPUs: n.gpu, ScratchBytes: n.scratch}
	if len(n.custom) > 0 {
		r.Custom = make(map[string]int64, len(n.custom))
		for k, v := range n.custom {
			r.Custom[k] = v
		}
	}
	return r
}

// capacity renders the usable capacity (GPU count capped by devices).
func (n *nodeState) capacity() model.Resources {
	r := n.node.Capacity.Copy()
	r.GPUs = n.capGPU
	return r
}

// freeGPUIndices lists the unheld device indices, ascending.
func (n *nodeState) freeGPUIndices() []int {
	out := make([]int, 0, n.freeSlots)
	for i, used := range n.gpuUsed {
		if !used {
			out = append(out, n.gpuIdx[i])
		}
	}
	return out
}

// buildNodes turns the snapshot's nodes and live allocations into the free
// state of every schedulable node, sorted by name. It also returns the
// unschedulable nodes (for reasons). This is the one place free capacity is
// computed; ComputeFree exposes the same numbers to the plan verifier.
//
// allocNode gives, per allocation, the index of the node it holds room on
// (-1: terminal, or not on a schedulable node); byName the index of each
// schedulable node; stopping counts the live allocations being stopped.
func buildNodes(sc *Scratch, nodes []*model.Node, allocs []*model.Allocation) (sched []nodeState, unsched []*model.Node, allocNode []int32, byName map[string]int32, stopping int) {
	ready := grab(&sc.ready, len(nodes))[:0]
	for _, n := range nodes {
		switch {
		case n == nil:
		case n.Schedulable():
			ready = append(ready, n)
		default:
			unsched = append(unsched, n)
		}
	}
	byNodeName := func(a, b *model.Node) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(ready, byNodeName)
	slices.SortFunc(unsched, byNodeName)

	sched = grab(&sc.nodes, len(ready))[:0]
	if sc.byName == nil {
		sc.byName = make(map[string]int32, len(ready))
	} else {
		clear(sc.byName)
	}
	byName = sc.byName
	capClasses := map[[4]int64]int32{}
	for _, n := range ready {
		if _, dup := byName[n.Name]; dup {
			continue // names are unique in the state store; be safe anyway
		}
		byName[n.Name] = int32(len(sched))
		ns := newNodeState(n)
		ns.index = int32(len(sched))
		c := [4]int64{ns.capCPU, ns.capMem, ns.capGPU, ns.capScratch}
		id, ok := capClasses[c]
		if !ok {
			id = int32(len(capClasses))
			capClasses[c] = id
		}
		ns.capClass = id
		sched = append(sched, ns)
	}
	allocNode = grab(&sc.allocNode, len(allocs))
	lastName, lastIdx, lastOK, looked := "", int32(0), false, false
	for k, a := range allocs {
		allocNode[k] = -1
		if a == nil || a.Status.Terminal() {
			continue
		}
		if a.Desired == model.DesiredStop {
			stopping++
		}
		// A job's tasks often share a node: look each run of one up once.
		if !looked || a.Node != lastName {
			lastIdx, lastOK = byName[a.Node]
			lastName, looked = a.Node, true
		}
		i, ok := lastIdx, lastOK
		if !ok {
			continue // on a down or draining node: holds nothing we could use
		}
		allocNode[k] = i
		sched[i].hold(&a.Resources, a.GPUIndices)
	}
	for i := range sched {
		sched[i].refreshShare()
	}
	return sched, unsched, allocNode, byName, stopping
}

func newNodeState(n *model.Node) nodeState {
	c := n.Capacity
	s := nodeState{
		node: n, name: n.Name, flavor: nodeFlavor(n),
		capCPU: c.MilliCPU, capMem: c.MemoryBytes, capScratch: c.ScratchBytes,
		cpu: c.MilliCPU, mem: c.MemoryBytes, gpu: c.GPUs, scratch: c.ScratchBytes,
	}
	if len(c.Custom) > 0 {
		s.custom = make(map[string]int64, len(c.Custom))
		for k, v := range c.Custom {
			s.custom[k] = v
		}
	}
	if len(n.GPUs) > 0 {
		idx := make([]int, 0, len(n.GPUs))
		for _, g := range n.GPUs {
			idx = append(idx, g.Index)
		}
		sort.Ints(idx)
		uniq := idx[:0]
		for i, v := range idx {
			if i == 0 || v != idx[i-1] {
				uniq = append(uniq, v)
			}
		}
		s.gpuIdx = uniq
		s.gpuUsed = make([]bool, len(uniq))
		s.freeSlots = int64(len(uniq))
	}
	s.capGPU = min(c.GPUs, int64(len(s.gpuIdx)))
	return s
}

// hold subtracts a live allocation's resources and marks its devices used.
// Indices the node does not have are ignored.
func (n *nodeState) hold(r *model.Resources, gpus []int) {
	n.cpu -= r.MilliCPU
	n.mem -= r.MemoryBytes
	n.gpu -= r.GPUs
	n.scratch -= r.ScratchBytes
	for k, v := range r.Custom {
		if n.custom == nil {
			n.custom = make(map[string]int64, len(r.Custom))
		}
		n.custom[k] -= v
	}
	for _, g := range gpus {
		if s := n.slot(g); s >= 0 && !n.gpuUsed[s] {
			n.gpuUsed[s] = true
			n.freeSlots--
		}
	}
}

// slot returns the position of device index g in gpuIdx, or -1.
func (n *nodeState) slot(g int) int {
	i := sort.SearchInts(n.gpuIdx, g)
	if i < len(n.gpuIdx) && n.gpuIdx[i] == g {
		return i
	}
	return -1
}

// fits reports whether one task needing r fits in what is free now.
func (n *nodeState) fits(r *model.Resources) bool {
	if r.MilliCPU > n.cpu || r.MemoryBytes > n.mem || r.ScratchBytes > n.scratch {
		return false
	}
	// Same rule as model.Resources.Fits plus device indices: an overcommitted
	// GPU count (negative free) blocks even CPU-only tasks, as in VerifyJob.
	if r.GPUs > n.gpu || r.GPUs > n.freeSlots {
		return false
	}
	if len(r.Custom) == 0 { // ranging over a nil map still costs a call
		return true
	}
	for k, v := range r.Custom {
		if v > n.custom[k] {
			return false
		}
	}
	return true
}

// NodeFree is one schedulable node's free capacity given live allocations.
type NodeFree struct {
	Node *model.Node
	// Free is Capacity minus what live allocations hold (GPUs counted like
	// any other dimension). It can be negative if the node was overcommitted.
	Free model.Resources
	// FreeGPUs lists the device indices (Node.GPUs[i].Index) no live
	// allocation holds, ascending. A task needing g GPUs needs Free.GPUs >= g
	// and g of these indices.
	FreeGPUs []int
}

// ComputeFree computes each schedulable node's free resources and free GPU
// indices given live allocations, keyed by node name. Unschedulable nodes and
// allocations on them are left out; terminal allocations hold nothing. The
// arithmetic is the scheduler's own, so a plan the scheduler made from the
// same input always passes VerifyJob.
func ComputeFree(nodes []*model.Node, allocs []*model.Allocation) map[string]*NodeFree {
	states, _, _, _, _ := buildNodes(&Scratch{}, nodes, allocs)
	out := make(map[string]*NodeFree, len(states))
	for i := range states {
		n := &states[i]
		out[n.name] = &NodeFree{Node: n.node, Free: n.freeResources(), FreeGPUs: n.freeGPUIndices()}
	}
	return out
}

var (
	// ErrStale means the cluster changed under the plan: a node is gone,
	// down or draining, or no longer has room or the named GPUs free. The
	// server drops the job's placements and lets the scheduler run again.
	ErrStale = errors.New("placement no longer fits")
	// ErrMalformed means the placements are wrong in themselves (mixed jobs,
	// repeated task, GPU count not matching the indices, negative amounts):
	// a bug in the scheduler, never a race.
	ErrMalformed = errors.New("malformed placement")
)

// VerifyJob re-checks one job's placements against free capacity. On success
// it subtracts them from free (so the next job of the same plan is checked
// against what is left) and returns nil; on failure free is unchanged and the
// error wraps ErrStale or ErrMalformed and names the task, node and shortfall.
func VerifyJob(free map[string]*NodeFree, placements []Placement) error {
	if len(placements) == 0 {
		return nil
	}
	type work struct {
		free model.Resources
		used map[int]bool // device indices taken by this job on the node
	}
	touched := make(map[string]*work)
	var order []string // nodes in first-touched order, for a deterministic commit
	tasks := make(map[int]bool, len(placements))
	job := placements[0].JobID
	for _, p := range placements {
		where := fmt.Sprintf("job %d task %d on node %q", uint64(p.JobID), p.TaskIndex, p.Node)
		switch {
		case p.JobID != job:
			return fmt.Errorf("%w: %s: placements mix jobs %d and %d", ErrMalformed, where, uint64(job), uint64(p.JobID))
		case tasks[p.TaskIndex]:
			return fmt.Errorf("%w: %s: task placed twice", ErrMalformed, where)
		case p.TaskIndex < 0:
			return fmt.Errorf("%w: %s: task index must not be negative", ErrMalformed, where)
		case negative(&p.Resources) != "":
			return fmt.Errorf("%w: %s: %s must not be negative", ErrMalformed, where, negative(&p.Resources))
		case int64(len(p.GPUIndices)) != p.Resources.GPUs:
			return fmt.Errorf("%w: %s: requests gpu=%d but names %d GPU indices", ErrMalformed, where, p.Resources.GPUs, len(p.GPUIndices))
		}
		tasks[p.TaskIndex] = true
		nf, ok := free[p.Node]
		if !ok || nf == nil {
			return fmt.Errorf("%w: %s: node is unknown, down or draining", ErrStale, where)
		}
		w := touched[p.Node]
		if w == nil {
			w = &work{free: nf.Free.Copy(), used: map[int]bool{}}
			touched[p.Node] = w
			order = append(order, p.Node)
		}
		if dim := w.free.Shortfall(p.Resources); dim != "" {
			return fmt.Errorf("%w: %s: needs %s but only %s is free (short of %s)", ErrStale, where, p.Resources, w.free, dim)
		}
		for _, g := range p.GPUIndices {
			if w.used[g] {
				return fmt.Errorf("%w: %s: GPU %d is given twice", ErrMalformed, where, g)
			}
			if i := sort.SearchInts(nf.FreeGPUs, g); i == len(nf.FreeGPUs) || nf.FreeGPUs[i] != g {
				return fmt.Errorf("%w: %s: GPU %d is not free (free: %s)", ErrStale, where, g, intList(nf.FreeGPUs))
			}
			w.used[g] = true
		}
		w.free = w.free.Sub(p.Resources)
	}
	for _, name := range order {
		w, nf := touched[name], free[name]
		nf.Free = w.free
		left := make([]int, 0, len(nf.FreeGPUs))
		for _, g := range nf.FreeGPUs {
			if !w.used[g] {
				left = append(left, g)
			}
		}
		nf.FreeGPUs = left
	}
	return nil
}

// negative names the first negative dimension of r, or "".
func negative(r *model.Resources) string {
	switch {
	case r.MilliCPU < 0:
		return "cpu"
	case r.MemoryBytes < 0:
		return "memory"
	case r.GPUs < 0:
		return "gpu"
	case r.ScratchBytes < 0:
		return "scratch"
	}
	if len(r.Custom) == 0 {
		return ""
	}
	keys := make([]string, 0, len(r.Custom))
	for k, v := range r.Custom {
		if v < 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		sort.Strings(keys)
		return keys[0]
	}
	return ""
}

func intList(xs []int) string {
	if len(xs) == 0 {
		return "none"
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}
