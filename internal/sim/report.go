package sim

import (
	"fmt"
	"sort"
	"strings"

	"github.com/durehq/dure/internal/model"
)

// finishResult computes the metrics and per-queue shares.
func (s *simulator) finishResult(capacity model.Resources) {
	r := s.res
	r.Metrics = ComputeMetrics(r.Jobs, capacity, s.primary)
	jobs := make([]int, len(s.queueNames))
	demand := make([]float64, len(s.queueNames))
	for i := range s.jobs {
		js := &s.jobs[i]
		jobs[js.queueIndex]++
		demand[js.queueIndex] += amount(js.size, s.primary) * js.run.Seconds()
	}
	withJobs := 0
	for _, n := range jobs {
		if n > 0 {
			withJobs++
		}
	}
	if withJobs < 2 {
		return
	}
	fair := fairShares(s.opt.Queues, s.queueNames, jobs)
	var totalC, totalDemand float64
	for i := range s.queueNames {
		totalC += s.contended[i]
		totalDemand += demand[i]
	}
	type agg struct {
		n          int
		wait, bsld float64
	}
	per := make([]agg, len(s.queueNames))
	for _, j := range Measured(r.Jobs) {
		a := &per[s.queueOf[j.Queue]]
		a.n++
		a.wait += j.Wait().Seconds()
		a.bsld += j.BoundedSlowdown()
	}
	for i, name := range s.queueNames {
		if jobs[i] == 0 {
			continue // a cohort, or a queue no job of the trace names
		}
		qs := QueueShare{Queue: name, Jobs: per[i].n, FairShare: fair[i]}
		if totalC > 0 {
			qs.Share = s.contended[i] / totalC
		}
		if totalDemand > 0 {
			qs.Demand = demand[i] / totalDemand
		}
		if per[i].n > 0 {
			qs.MeanWait = secs(per[i].wait / float64(per[i].n))
			qs.MeanBSLD = per[i].bsld / float64(per[i].n)
		}
		r.Queues = append(r.Queues, qs)
	}
	sort.Slice(r.Queues, func(a, b int) bool { return strings.Compare(r.Queues[a].Queue, r.Queues[b].Queue) < 0 })
}

// fairShares is each queue's fair share of the cluster when every queue
// with jobs wants more than it gets: from the roots down, a queue's share
// is split among its children whose subtrees have jobs, by weight, its own
// jobs counting as one more child of weight 1 (as the scheduler does).
// Queues no job names, and their subtrees, take nothing: they lend.
// Queues not in the configuration are roots of weight 1.
func fairShares(conf []*model.Queue, names []string, jobs []int) []float64 {
	type node struct {
		weight   float64
		children []string
		own      int // jobs of the queue itself
		active   bool
	}
	tree := map[string]*node{}
	get := func(name string) *node {
		n := tree[name]
		if n == nil {
			n = &node{weight: 1}
			tree[name] = n
		}
		return n
	}
	parent := map[string]string{}
	for _, q := range conf {
		get(q.Name).weight = q.EffectiveWeight()
		if q.Parent != "" {
			parent[q.Name] = q.Parent
		}
	}
	for i, name := range names {
		get(name).own += jobs[i]
	}
	var roots []string
	for name := range tree {
		if p, ok := parent[name]; ok && tree[p] != nil {
			tree[p].children = append(tree[p].children, name)
		} else {
			roots = append(roots, name)
		}
	}
	sort.Strings(roots)
	for _, n := range tree {
		sort.Strings(n.children)
	}
	// A subtree is active when some queue in it has jobs (the file's tree
	// has no cycles: spec.ParseQueueFile refuses them).
	var mark func(name string) bool
	mark = func(name string) bool {
		n := tree[name]
		n.active = n.own > 0
		for _, c := range n.children {
			if mark(c) {
				n.active = true
			}
		}
		return n.active
	}
	for _, r := range roots {
		mark(r)
	}
	own := map[string]float64{}
	var split func(group []string, share float64, ownJobs bool, self string)
	split = func(group []string, share float64, ownJobs bool, self string) {
		var total float64
		for _, c := range group {
			if tree[c].active {
				total += tree[c].weight
			}
		}
		if ownJobs {
			total++
			own[self] = share / total
		}
		for _, c := range group {
			n := tree[c]
			if !n.active {
				continue
			}
			cs := share * n.weight / total
			if len(n.children) == 0 {
				own[c] = cs
				continue
			}
			split(n.children, cs, n.own > 0, c)
		}
	}
	split(roots, 1, false, "")
	out := make([]float64, len(names))
	for i, name := range names {
		out[i] = own[name]
	}
	return out
}

// DescribeCluster summarises nodes for people: "1 node (machine): cpu=100",
// "64 nodes: gpu=8 each", "1523 nodes, in all: cpu=… mem=… gpu=6212".
func DescribeCluster(nodes []*model.Node) string {
	switch {
	case len(nodes) == 0:
		return "no nodes"
	case len(nodes) == 1:
		return fmt.Sprintf("1 node (%s): %s", nodes[0].Name, FormatResources(nodes[0].Capacity))
	}
	same := true
	var total model.Resources
	for _, n := range nodes {
		total = total.Add(n.Capacity)
		same = same && FormatResources(n.Capacity) == FormatResources(nodes[0].Capacity)
	}
	if same {
		return fmt.Sprintf("%d nodes of %s", len(nodes), FormatResources(nodes[0].Capacity))
	}
	return fmt.Sprintf("%d nodes, in all %s", len(nodes), FormatResources(total))
}

// FormatResources is Resources.String without the dimensions that are zero.
func FormatResources(r model.Resources) string {
	var parts []string
	if r.MilliCPU != 0 {
		parts = append(parts, "cpu="+model.FormatMilliCPU(r.MilliCPU))
	}
	if r.MemoryBytes != 0 {
		parts = append(parts, "mem="+model.FormatBytes(r.MemoryBytes))
	}
	if r.GPUs != 0 {
		parts = append(parts, fmt.Sprintf("gpu=%d", r.GPUs))
	}
	if r.ScratchBytes != 0 {
		parts = append(parts, "scratch="+model.FormatBytes(r.ScratchBytes))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, " ")
}
