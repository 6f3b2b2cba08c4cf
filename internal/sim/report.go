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
	if len(s.queueNames) < 2 {
		return
	}
	weights := map[string]float64{}
	for _, q := range s.opt.Queues {
		weights[q.Name] = q.EffectiveWeight()
	}
	var totalW, totalC, totalDemand float64
	demand := make([]float64, len(s.queueNames))
	for i := range s.jobs {
		js := &s.jobs[i]
		demand[js.queueIndex] += amount(js.size, s.primary) * js.run.Seconds()
	}
	for i, name := range s.queueNames {
		w, ok := weights[name]
		if !ok {
			w = 1
		}
		totalW += w
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
		w, ok := weights[name]
		if !ok {
			w = 1
		}
		qs := QueueShare{Queue: name, Jobs: per[i].n, FairShare: w / totalW}
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
