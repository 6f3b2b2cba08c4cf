package sched

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/durehq/dure/internal/model"
)

// Reasons are computed only for jobs left pending, once per task shape (all
// jobs of one shape share the analysis), against the free capacity after
// this plan. Each analysis is one scan of the nodes; maxAnalyses bounds the
// scans per pass so a queue of thousands of distinct shapes stays cheap.
const maxAnalyses = 1024

// shapeAnalysis is what the reasons need to know about one shape.
type shapeAnalysis struct {
	skipped  bool   // over budget: only the request is known
	matching int    // schedulable nodes with the required labels
	capable  int    // ... that could hold one task if empty
	fitNow   int64  // tasks of this shape that fit now, summed over nodes
	why      string // the Constraints or NoNodeFits message when it applies
	room     string // where there is room now, or what is short
	// reasons memoizes reason for jobs whose only group has this shape,
	// by task count: a backlog of identical jobs costs one message.
	reasons map[int]model.Reason
}

// reason explains why j was not placed.
func (p *pass) reason(j *model.Job) model.Reason {
	g := soleGroup(j)
	if g == nil || len(p.nodes) == 0 || invalidJob(j) != "" {
		return p.reasonOf(j)
	}
	a := p.analyse(p.shapeFor(g, "", false))
	if r, ok := a.reasons[g.Count]; ok {
		return r
	}
	r := p.reasonOf(j)
	if a.reasons == nil {
		a.reasons = map[int]model.Reason{}
	}
	a.reasons[g.Count] = r
	return r
}

// soleGroup is the job's only group with tasks, nil if it has several.
func soleGroup(j *model.Job) *model.TaskGroup {
	var sole *model.TaskGroup
	for i := range j.Groups {
		if j.Groups[i].Count > 0 {
			if sole != nil {
				return nil
			}
			sole = &j.Groups[i]
		}
	}
	return sole
}

// reasonOf works out reason.
func (p *pass) reasonOf(j *model.Job) model.Reason {
	if msg := invalidJob(j); msg != "" {
		return model.Reason{Code: model.ReasonNoFit, Message: msg}
	}
	if len(p.nodes) == 0 {
		return model.Reason{Code: model.ReasonNoNodes, Message: p.noNodesMessage()}
	}
	var groups []int
	for gi, g := range j.Groups {
		if g.Count > 0 {
			groups = append(groups, gi)
		}
	}
	prefix := func(gi int) string {
		if len(groups) > 1 {
			return fmt.Sprintf("group %q: ", j.Groups[gi].Name)
		}
		return ""
	}
	// Permanent problems first: they tell the user to change the job.
	for _, gi := range groups {
		a := p.analyse(p.shapeFor(&j.Groups[gi], "", false))
		switch {
		case a.skipped:
		case a.matching == 0:
			return model.Reason{Code: model.ReasonConstraints, Message: prefix(gi) + a.why}
		case a.capable == 0:
			return model.Reason{Code: model.ReasonNoFit, Message: prefix(gi) + a.why}
		}
		if g := &j.Groups[gi]; int64(g.Count) > p.emptyRoom(p.shapeFor(g, "", false)) {
			return model.Reason{Code: model.ReasonNoFit, Message: fmt.Sprintf(
				"%sneeds %s of %s at once; the ready nodes could hold at most %d even if empty",
				prefix(gi), plural(g.Count, "task"), g.Resources, p.emptyRoom(p.shapeFor(g, "", false)))}
		}
	}
	for _, gi := range groups {
		g := &j.Groups[gi]
		a := p.analyse(p.shapeFor(g, "", false))
		if a.skipped {
			return model.Reason{Code: model.ReasonResources, Message: fmt.Sprintf(
				"%sneeds %s of %s; not enough free capacity now (not analysed further: more than %d distinct task shapes are pending)",
				prefix(gi), plural(g.Count, "task"), g.Resources, maxAnalyses)}
		}
		if a.fitNow < int64(g.Count) {
			return model.Reason{Code: model.ReasonResources, Message: fmt.Sprintf(
				"%sneeds %s of %s; %d fit now%s", prefix(gi), plural(g.Count, "task"), g.Resources, a.fitNow, a.room)}
		}
	}
	// Every group fits on its own but the groups do not fit together.
	parts := make([]string, 0, len(groups))
	for _, gi := range groups {
		g := &j.Groups[gi]
		parts = append(parts, fmt.Sprintf("%s: %d × %s", g.Name, g.Count, g.Resources))
	}
	return model.Reason{Code: model.ReasonGang, Message: fmt.Sprintf(
		"needs all %d tasks at once (%s); each group fits on its own now, but not all together",
		j.TaskCount(), strings.Join(parts, "; "))}
}

func (p *pass) noNodesMessage() string {
	if len(p.unsched) == 0 {
		return "no schedulable nodes: no node has registered"
	}
	down, draining := 0, 0
	for _, n := range p.unsched {
		if n.Status != model.NodeReady {
			down++
		} else {
			draining++
		}
	}
	return fmt.Sprintf("no schedulable nodes (%d down, %d draining)", down, draining)
}

// emptyRoom is how many tasks of s the schedulable nodes could hold if
// nothing ran on them (cached on the shape).
func (p *pass) emptyRoom(s *shape) int64 {
	if s.empty >= 0 {
		return s.empty
	}
	// Nodes of one static class hold as many as each other: count one per
	// class.
	const most = int64(1 << 40)
	var n int64
	r := &s.req
	st := p.staticClasses()
	for class, i := range st.rep {
		nd := &p.nodes[i]
		if !passesStatic(nd, s) {
			continue
		}
		c := most
		per := func(capacity, need int64) {
			if need > 0 {
				c = min(c, capacity/need)
			}
		}
		per(nd.capCPU, r.MilliCPU)
		per(nd.capMem, r.MemoryBytes)
		per(nd.capGPU, r.GPUs)
		per(nd.capScratch, r.ScratchBytes)
		for k, v := range r.Custom {
			per(nd.node.Capacity.Custom[k], v)
		}
		if size := st.size[class]; c > 0 && size > (most-n)/c {
			n = most
		} else {
			n += size * c
		}
	}
	s.empty = n
	return n
}

// everFits reports whether each group of j could fit on the schedulable
// nodes if they were empty (a cheap test, group by group).
func (p *pass) everFits(j *model.Job) bool {
	if invalidJob(j) != "" {
		return false
	}
	for gi := range j.Groups {
		g := &j.Groups[gi]
		if g.Count > 0 && int64(g.Count) > p.emptyRoom(p.shapeFor(g, "", false)) {
			return false
		}
	}
	return true
}

// analyse scans the nodes once for shape s and caches the result on it.
func (p *pass) analyse(s *shape) *shapeAnalysis {
	if s.analysis != nil {
		return s.analysis
	}
	a := &shapeAnalysis{}
	s.analysis = a
	if p.analyses >= maxAnalyses {
		a.skipped = true
		return a
	}
	p.analyses++

	type roomy struct {
		n     *nodeState
		count int64
		dim   string
	}
	// The message names the three nodes with the most room (the first by
	// name among equals) and counts the rest.
	const show = 3
	var top [show]roomy
	withRoom := 0
	var shortBase [len(resourceDims)]int // cpu, mem, gpu, scratch: no map work per node
	short := map[string]int{}
	for i := range p.nodes {
		nd := &p.nodes[i]
		if !matchesConstraints(nd, s) {
			continue
		}
		a.matching++
		if !capacityEverEnough(nd, s) {
			continue
		}
		a.capable++
		c, dim := tasksFit(nd, &s.req)
		if c > 0 {
			a.fitNow = min(a.fitNow+c, 1<<40)
			withRoom++
			for k := 0; k < show; k++ {
				if top[k].n == nil || c > top[k].count {
					copy(top[k+1:], top[k:show-1])
					top[k] = roomy{nd, c, dim}
					break
				}
			}
		} else if i := slices.Index(resourceDims[:], dim); i >= 0 {
			shortBase[i]++
		} else {
			short[dim]++
		}
	}
	for i, n := range shortBase {
		if n > 0 {
			short[resourceDims[i]] += n
		}
	}
	switch {
	case a.matching == 0:
		a.why = p.constraintsMessage(s)
		return a
	case a.capable == 0:
		a.why = p.noFitMessage(s)
		return a
	}

	if withRoom > 0 {
		parts := make([]string, 0, show+1)
		for _, r := range top {
			if r.n != nil {
				parts = append(parts, fmt.Sprintf("%s %s=%s", r.n.name, r.dim, freeIn(r.n, r.dim)))
			}
		}
		if withRoom > show {
			parts = append(parts, plural(withRoom-show, "more node"))
		}
		a.room = " (free: " + strings.Join(parts, ", ") + ")"
		return a
	}
	dims := make([]string, 0, len(short))
	for d := range short {
		dims = append(dims, d)
	}
	sort.Slice(dims, func(x, y int) bool {
		if short[dims[x]] != short[dims[y]] {
			return short[dims[x]] > short[dims[y]]
		}
		return dims[x] < dims[y]
	})
	parts := make([]string, len(dims))
	for i, d := range dims {
		name := d
		if d == "mem" {
			name = "memory"
		}
		parts[i] = fmt.Sprintf("%s on %s", name, plural(short[d], "node"))
	}
	a.room = " (short of " + strings.Join(parts, ", ") + ")"
	return a
}

// resourceDims are the names tasksFit gives the built-in dimensions.
var resourceDims = [...]string{"cpu", "mem", "gpu", "scratch"}

// tasksFit counts how many tasks needing r fit in n's free capacity now, and
// names the dimension that limits it.
func tasksFit(n *nodeState, r *model.Resources) (int64, string) {
	// No room for one task in a dimension: none fit, and the first such
	// dimension (in the order below) is the limit. On a busy cluster most
	// nodes end here, without a division.
	switch {
	case r.MilliCPU > 0 && n.cpu < r.MilliCPU:
		return 0, "cpu"
	case r.MemoryBytes > 0 && n.mem < r.MemoryBytes:
		return 0, "mem"
	case r.GPUs > 0 && min(n.gpu, n.freeSlots) < r.GPUs:
		return 0, "gpu"
	case r.ScratchBytes > 0 && n.scratch < r.ScratchBytes:
		return 0, "scratch"
	}
	best, dim := int64(1<<40), ""
	limit := func(name string, free, need int64) {
		if need <= 0 {
			return
		}
		c := int64(0)
		if free > 0 {
			c = free / need
		}
		if c < best {
			best, dim = c, name
		}
	}
	limit("cpu", n.cpu, r.MilliCPU)
	limit("mem", n.mem, r.MemoryBytes)
	limit("gpu", min(n.gpu, n.freeSlots), r.GPUs)
	limit("scratch", n.scratch, r.ScratchBytes)
	if len(r.Custom) > 0 {
		keys := make([]string, 0, len(r.Custom))
		for k := range r.Custom {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			limit(k, n.custom[k], r.Custom[k])
		}
	}
	// A negative free amount in a dimension the task does not request still
	// blocks it (fits() follows model.Resources.Fits); report that dimension.
	if best > 0 && !n.fits(r) {
		best, dim = 0, n.freeResources().Shortfall(*r)
		if dim == "memory" {
			dim = "mem"
		}
	}
	return best, dim
}

// freeIn renders n's free amount in one dimension as people read it.
func freeIn(n *nodeState, dim string) string {
	switch dim {
	case "cpu":
		return model.FormatMilliCPU(n.cpu)
	case "mem":
		return model.FormatBytes(n.mem)
	case "gpu":
		return fmt.Sprint(min(n.gpu, n.freeSlots))
	case "scratch":
		return model.FormatBytes(n.scratch)
	}
	return fmt.Sprint(n.custom[dim])
}

// constraintsMessage explains that no schedulable node has s's labels.
func (p *pass) constraintsMessage(s *shape) string {
	keys := make([]string, 0, len(s.constraints))
	for k := range s.constraints {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	has := func(n *model.Node, k string) bool {
		v, ok := n.Labels[k]
		return ok && v == s.constraints[k]
	}
	var msg string
	for _, k := range keys {
		found := false
		for i := range p.nodes {
			if has(p.nodes[i].node, k) {
				found = true
				break
			}
		}
		if !found {
			msg = fmt.Sprintf("no ready node has label %s=%s", k, s.constraints[k])
			break
		}
	}
	if msg == "" {
		msg = "no ready node has all of the " + labelList(s.constraints, keys)
	}
	elsewhere := 0
	for _, n := range p.unsched {
		all := true
		for _, k := range keys {
			if !has(n, k) {
				all = false
				break
			}
		}
		if all {
			elsewhere++
		}
	}
	if elsewhere > 0 {
		msg += fmt.Sprintf(" (%s down or draining)", plural(elsewhere, "matching node"))
	}
	return msg
}

// noFitMessage explains that no matching node could hold one task of s even
// if it were empty, naming the largest node in the dimension that falls short.
func (p *pass) noFitMessage(s *shape) string {
	type dimension struct {
		name string
		of   func(n *nodeState) int64
		need int64
	}
	r := &s.req
	dims := []dimension{
		{"cpu", func(n *nodeState) int64 { return n.capCPU }, r.MilliCPU},
		{"memory", func(n *nodeState) int64 { return n.capMem }, r.MemoryBytes},
		{"gpu", func(n *nodeState) int64 { return n.capGPU }, r.GPUs},
		{"scratch", func(n *nodeState) int64 { return n.capScratch }, r.ScratchBytes},
	}
	ck := make([]string, 0, len(r.Custom))
	for k := range r.Custom {
		ck = append(ck, k)
	}
	sort.Strings(ck)
	for _, k := range ck {
		dims = append(dims, dimension{k, func(n *nodeState) int64 { return n.node.Capacity.Custom[k] }, r.Custom[k]})
	}
	where := "ready node"
	if len(s.constraints) > 0 {
		keys := make([]string, 0, len(s.constraints))
		for k := range s.constraints {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		where = "ready node with " + labelList(s.constraints, keys)
	}
	var matching []*nodeState
	for i := range p.nodes {
		if matchesConstraints(&p.nodes[i], s) {
			matching = append(matching, &p.nodes[i])
		}
	}
	for _, d := range dims {
		var largest *nodeState
		for _, n := range matching {
			if largest == nil || d.of(n) > d.of(largest) {
				largest = n
			}
		}
		if largest != nil && d.need > d.of(largest) {
			return fmt.Sprintf("each task needs %s; the largest %s has %s (%s)", r, where, largest.capacity(), largest.name)
		}
	}
	// Each dimension fits somewhere, but never all on one node: show the
	// node that comes closest (fewest dimensions short).
	var closest *nodeState
	fewest := len(dims) + 1
	for _, n := range matching {
		c := 0
		for _, d := range dims {
			if d.need > d.of(n) {
				c++
			}
		}
		if c < fewest {
			closest, fewest = n, c
		}
	}
	return fmt.Sprintf("each task needs %s; no %s has all of it at once (closest: %s with %s)", r, where, closest.name, closest.capacity())
}

func labelList(m map[string]string, sortedKeys []string) string {
	parts := make([]string, len(sortedKeys))
	for i, k := range sortedKeys {
		parts[i] = k + "=" + m[k]
	}
	prefix := "label "
	if len(parts) > 1 {
		prefix = "labels "
	}
	return prefix + strings.Join(parts, ", ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
