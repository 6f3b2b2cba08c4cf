package sched

import (
	"fmt"
	"sort"

	"github.com/durehq/dure/internal/model"
)

// naiveSchedule is the deliberately simple reference the fast scheduler must
// agree with (STYLE.md habit 6): the same policy written with model.Resources
// arithmetic, no indexes, no caches, every node rescanned for every task and
// the whole free state copied for every job. Only the score formula (share)
// is shared with the code under test: it is the policy, not the mechanism.
func naiveSchedule(s *Snapshot) *Plan {
	type node struct {
		n       *model.Node
		free    model.Resources
		devices []int        // unique device indices, ascending
		freeIdx map[int]bool // device index -> free
	}
	var nodes []*node
	seen := map[string]bool{}
	for _, n := range s.Nodes {
		if n == nil || !n.Schedulable() || seen[n.Name] {
			continue
		}
		seen[n.Name] = true
		nd := &node{n: n, free: n.Capacity.Copy(), freeIdx: map[int]bool{}}
		for _, g := range n.GPUs {
			if _, dup := nd.freeIdx[g.Index]; !dup {
				nd.devices = append(nd.devices, g.Index)
			}
			nd.freeIdx[g.Index] = true
		}
		sort.Ints(nd.devices)
		nodes = append(nodes, nd)
	}
	sort.Slice(nodes, func(a, b int) bool { return nodes[a].n.Name < nodes[b].n.Name })
	byName := map[string]*node{}
	for _, nd := range nodes {
		byName[nd.n.Name] = nd
	}
	for _, a := range s.Allocs {
		if a == nil || a.Status.Terminal() || byName[a.Node] == nil {
			continue
		}
		nd := byName[a.Node]
		nd.free = nd.free.Sub(a.Resources)
		for _, g := range a.GPUIndices {
			if _, ok := nd.freeIdx[g]; ok {
				nd.freeIdx[g] = false
			}
		}
	}
	freeDevices := func(nd *node) []int {
		var out []int
		for _, d := range nd.devices {
			if nd.freeIdx[d] {
				out = append(out, d)
			}
		}
		return out
	}
	capGPU := func(nd *node) int64 { return min(nd.n.Capacity.GPUs, int64(len(nd.devices))) }
	labelsOK := func(nd *node, g *model.TaskGroup) bool {
		for k, v := range g.Constraints {
			if got, ok := nd.n.Labels[k]; !ok || got != v {
				return false
			}
		}
		return true
	}
	everOK := func(nd *node, r model.Resources) bool {
		return nd.n.Capacity.Fits(r) && r.GPUs <= capGPU(nd)
	}
	fitsNow := func(nd *node, r model.Resources) bool {
		return nd.free.Fits(r) && int64(len(freeDevices(nd))) >= r.GPUs
	}
	key := func(nd *node, r model.Resources) int64 {
		var k int64
		if r.GPUs == 0 && capGPU(nd) > 0 {
			k = 1 << 40
		}
		c := nd.n.Capacity
		// bestFit: the node's free share minus the task's share of it.
		return k + share(nd.free.MilliCPU, c.MilliCPU) - share(r.MilliCPU, c.MilliCPU) +
			share(nd.free.MemoryBytes, c.MemoryBytes) - share(r.MemoryBytes, c.MemoryBytes) +
			share(min(nd.free.GPUs, int64(len(freeDevices(nd)))), capGPU(nd)) - share(r.GPUs, capGPU(nd)) +
			share(nd.free.ScratchBytes, c.ScratchBytes) - share(r.ScratchBytes, c.ScratchBytes)
	}
	copyAll := func() []*node {
		out := make([]*node, len(nodes))
		for i, nd := range nodes {
			c := *nd
			c.free = nd.free.Copy()
			c.freeIdx = map[int]bool{}
			for k, v := range nd.freeIdx {
				c.freeIdx[k] = v
			}
			out[i] = &c
		}
		return out
	}
	// placeOne puts one task on the best node of ns, or reports false.
	placeOne := func(ns []*node, g *model.TaskGroup) (*node, []int, bool) {
		var best *node
		var bestKey int64
		for _, nd := range ns {
			if !labelsOK(nd, g) || !everOK(nd, g.Resources) || !fitsNow(nd, g.Resources) {
				continue
			}
			if k := key(nd, g.Resources); best == nil || k < bestKey {
				best, bestKey = nd, k
			}
		}
		if best == nil {
			return nil, nil, false
		}
		best.free = best.free.Sub(g.Resources)
		var gpus []int
		for _, d := range freeDevices(best)[:g.Resources.GPUs] {
			best.freeIdx[d] = false
			gpus = append(gpus, d)
		}
		return best, gpus, true
	}

	var jobs []*model.Job
	seenJob := map[model.JobID]bool{}
	sorted := append([]*model.Job(nil), s.Pending...)
	sort.Slice(sorted, func(a, b int) bool { return jobBefore(sorted[a], sorted[b]) })
	for _, j := range sorted {
		if j != nil && !seenJob[j.ID] {
			seenJob[j.ID] = true
			jobs = append(jobs, j)
		}
	}

	plan := &Plan{Reasons: map[model.JobID]model.Reason{}}
	var left []*model.Job
	for _, j := range jobs {
		if invalidJob(j) != "" || len(nodes) == 0 {
			left = append(left, j)
			continue
		}
		trial := copyAll()
		var out []Placement
		ok := true
		task := 0
		for gi := range j.Groups {
			g := &j.Groups[gi]
			for t := 0; t < g.Count && ok; t++ {
				nd, gpus, placed := placeOne(trial, g)
				if !placed {
					ok = false
					break
				}
				out = append(out, Placement{JobID: j.ID, Group: g.Name, TaskIndex: task, Node: nd.n.Name, Resources: g.Resources.Copy(), GPUIndices: gpus})
				task++
			}
		}
		if !ok {
			left = append(left, j)
			continue
		}
		nodes = trial
		plan.Placements = append(plan.Placements, out...)
	}

	// Reason codes only (the messages are the fast code's business; the
	// table tests pin them down).
	for _, j := range left {
		code := ""
		switch {
		case invalidJob(j) != "":
			code = model.ReasonNoFit
		case len(nodes) == 0:
			code = model.ReasonNoNodes
		}
		for gi := range j.Groups {
			g := &j.Groups[gi]
			if code != "" || g.Count == 0 {
				continue
			}
			matching, capable := 0, 0
			for _, nd := range nodes {
				if labelsOK(nd, g) {
					matching++
					if everOK(nd, g.Resources) {
						capable++
					}
				}
			}
			if matching == 0 {
				code = model.ReasonConstraints
			} else if capable == 0 {
				code = model.ReasonNoFit
			} else {
				// More tasks than the nodes could hold if empty: never fits.
				var room int64
				for _, nd := range nodes {
					if !labelsOK(nd, g) || !everOK(nd, g.Resources) {
						continue
					}
					c := nd.n.Capacity.Copy()
					c.GPUs = capGPU(nd)
					k := int64(0)
					for c.Fits(g.Resources) && k <= int64(g.Count) { // enough to compare with the count
						c = c.Sub(g.Resources)
						k++
					}
					room += k
				}
				if int64(g.Count) > room {
					code = model.ReasonNoFit
				}
			}
		}
		for gi := range j.Groups {
			g := &j.Groups[gi]
			if code != "" || g.Count == 0 {
				continue
			}
			trial := copyAll()
			for t := 0; t < g.Count; t++ {
				if _, _, ok := placeOne(trial, g); !ok {
					code = model.ReasonResources
					break
				}
			}
		}
		if code == "" {
			code = model.ReasonGang
		}
		plan.Reasons[j.ID] = model.Reason{Code: code}
	}
	return plan
}

// checkInvariants asserts what must hold of any plan, independently of the
// policy: no node overcommitted in any dimension, GPU indices real and never
// shared, placements only on schedulable nodes with matching labels, every
// placed job contiguous and complete (or, with a gang minimum, its first
// tasks in group order, at least the minimum), every other pending job
// explained, and the server's verifier accepting the plan.
func checkInvariants(t tb, s *Snapshot, p *Plan) {
	t.Helper()
	nodes := map[string]*model.Node{}
	for _, n := range s.Nodes {
		nodes[n.Name] = n
	}
	jobs := map[model.JobID]*model.Job{}
	for _, j := range s.Pending {
		jobs[j.ID] = j
	}
	used := map[string]model.Resources{}
	gpuHolder := map[string]map[int]string{}
	holdGPU := func(node string, g int, who string) {
		if gpuHolder[node] == nil {
			gpuHolder[node] = map[int]string{}
		}
		if prev, ok := gpuHolder[node][g]; ok {
			t.Errorf("node %s GPU %d given to %s but already held by %s", node, g, who, prev)
		}
		gpuHolder[node][g] = who
	}
	for _, a := range s.Allocs {
		if a.Status.Terminal() || nodes[a.Node] == nil || !nodes[a.Node].Schedulable() {
			continue
		}
		used[a.Node] = used[a.Node].Add(a.Resources)
		for _, g := range a.GPUIndices {
			holdGPU(a.Node, g, "alloc "+a.ID)
		}
	}

	placedJobs := map[model.JobID]bool{}
	free := ComputeFree(s.Nodes, s.Allocs)
	for i := 0; i < len(p.Placements); {
		id := p.Placements[i].JobID
		if placedJobs[id] {
			t.Errorf("job %d: placements are not contiguous", id)
		}
		placedJobs[id] = true
		j := jobs[id]
		if j == nil {
			t.Fatalf("placement for job %d, which is not pending", id)
		}
		end := i
		for end < len(p.Placements) && p.Placements[end].JobID == id {
			end++
		}
		var wantGroups []string
		for _, g := range j.Groups {
			for k := 0; k < g.Count; k++ {
				wantGroups = append(wantGroups, g.Name)
			}
		}
		if end-i < j.GangSize() || end-i > len(wantGroups) {
			t.Errorf("job %d: %d placements, want all %d tasks (at least the gang of %d)", id, end-i, len(wantGroups), j.GangSize())
		}
		if err := VerifyJob(free, p.Placements[i:end]); err != nil {
			t.Errorf("job %d: plan verifier rejects it: %v", id, err)
		}
		for k, pl := range p.Placements[i:end] {
			who := fmt.Sprintf("job %d task %d", id, pl.TaskIndex)
			if pl.TaskIndex != k {
				t.Errorf("%s: task index %d, want %d", who, pl.TaskIndex, k)
			}
			gi := groupIndex(j, pl.Group)
			if k < len(wantGroups) && pl.Group != wantGroups[k] || gi < 0 {
				t.Errorf("%s: group %q out of order", who, pl.Group)
				continue
			}
			g := j.Groups[gi]
			n := nodes[pl.Node]
			switch {
			case n == nil:
				t.Errorf("%s: unknown node %q", who, pl.Node)
				continue
			case !n.Schedulable():
				t.Errorf("%s: placed on unschedulable node %s (status %s, drain %v)", who, n.Name, n.Status, n.Drain)
			}
			for key, v := range g.Constraints {
				if n.Labels[key] != v {
					t.Errorf("%s: node %s lacks label %s=%s", who, n.Name, key, v)
				}
			}
			if int64(len(pl.GPUIndices)) != pl.Resources.GPUs {
				t.Errorf("%s: %d GPU indices for gpu=%d", who, len(pl.GPUIndices), pl.Resources.GPUs)
			}
			for _, gpu := range pl.GPUIndices {
				if !hasDevice(n, gpu) {
					t.Errorf("%s: GPU %d does not exist on %s", who, gpu, n.Name)
				}
				holdGPU(pl.Node, gpu, who)
			}
			used[pl.Node] = used[pl.Node].Add(pl.Resources)
		}
		i = end
	}
	for name, u := range used {
		if dim := nodes[name].Capacity.Shortfall(u); dim != "" {
			t.Errorf("node %s overcommitted in %s: holds %s of %s", name, dim, u, nodes[name].Capacity)
		}
	}
	for id := range jobs {
		_, explained := p.Reasons[id]
		if placedJobs[id] == explained {
			t.Errorf("job %d: placed=%v, has reason=%v; want exactly one", id, placedJobs[id], explained)
		}
	}
	for id, r := range p.Reasons {
		if jobs[id] == nil {
			t.Errorf("reason for job %d, which is not pending", id)
		}
		if r.Code == "" || r.Message == "" {
			t.Errorf("job %d: reason %+v lacks a code or a message", id, r)
		}
	}
}

// tb is what checkInvariants needs of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

func groupIndex(j *model.Job, name string) int {
	for i, g := range j.Groups {
		if g.Name == name {
			return i
		}
	}
	return -1
}

func hasDevice(n *model.Node, idx int) bool {
	for _, g := range n.GPUs {
		if g.Index == idx {
			return true
		}
	}
	return false
}

// jobBefore is the scheduling order written the obvious way: priority
// (higher first), then submit time (earlier first), then ID (lower first).
func jobBefore(a, b *model.Job) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if !a.SubmitTime.Equal(b.SubmitTime) {
		return a.SubmitTime.Before(b.SubmitTime)
	}
	return a.ID < b.ID
}
