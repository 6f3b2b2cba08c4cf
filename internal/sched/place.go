package sched

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/durehq/dure/internal/model"
)

// maxIndexes bounds how many shape indexes a pass keeps (16 bytes per node
// each): what fits in indexBudget, between 32 and 128. Past that, a shape
// without an index is placed by a scan of the nodes, until it has been
// asked for more than twice as often as the least used indexed shape, which
// then gives up its index. (Plain LRU would rebuild an index for every
// placement when more shapes than indexes take turns.)
func maxIndexes(nodes int) int {
	return min(128, max(32, indexBudget/(16*max(nodes, 1))))
}

const indexBudget = 16 << 20

// shapeKey identifies a task shape: a per-task request plus node
// constraints. Tasks with equal keys are interchangeable for placement (an
// equivalence class). extra is "" unless the shape has custom resources or
// constraints, so the common key is built without allocating.
type shapeKey struct {
	cpu, mem, gpu, scratch int64
	extra                  string
	// label, value: the one constraint of a group with exactly one and no
	// custom resources (the common case, keyed without building extra).
	label, value string
	flavor       string
	spread       bool
}

// shape is one equivalence class of tasks during a pass.
type shape struct {
	req         model.Resources
	constraints map[string]string
	flavor      string // GPU flavor the nodes must have; "" any
	spread      bool   // worst fit instead of best fit
	// unfit >= 0 records that when a task of this shape last failed to find a
	// node, only unfit tasks of it could be placed in total. Free capacity
	// only shrinks during a pass, so a later group of this shape with more
	// than unfit tasks cannot fit either: it is skipped without trying. -1:
	// no failure seen.
	unfit int
	// empty caches emptyRoom: tasks of this shape the nodes could hold if
	// empty; -1 until computed.
	empty int64
	idx   *shapeIndex // nil until first needed, or after eviction
	uses  int         // placement searches for this shape in this pass
	// match[i] says whether node i has the constraint labels; shared by all
	// shapes with the same constraints; nil when there are none.
	match []bool
	// analysis caches the reason work for jobs left pending (reasons.go).
	analysis *shapeAnalysis
	// rShare caches taskShare per node capacity class (-1: not yet).
	rShare []int64
	// blocked: per gang size, the last placement of this shape that a
	// reservation blocked (PolicyDure, dure.blockedAgain).
	blocked []blocked
}

// shapeIndex is a min-heap of the nodes where one task of a shape fits now,
// ordered by (nodeKey, node index). Node indices follow name order, so the
// tie-break is by name. It is kept current lazily: every change of a node's
// free capacity is appended to pass.changes, and the index replays the
// changes it has not seen before it is used.
type shapeIndex struct {
	owner  *shape
	heap   []int32 // node indices
	pos    []int32 // per node: position in heap, notInHeap, or excluded
	key    []int64 // per node: its key while in the heap
	cursor int     // how much of pass.changes this index has applied
}

const (
	notInHeap = -1 // passes the static filters but does not fit now
	excluded  = -2 // fails a static filter: never a candidate this pass
)

// tentative is one task placed while its job is being tried.
type tentative struct {
	node       int32
	shape      *shape
	group      int
	slotsStart int // range in pass.slots of the GPU slots taken
	slotsEnd   int
}

// pass is the mutable state of one Schedule call.
type pass struct {
	nodes   []nodeState
	unsched []*model.Node
	// allocNode: per live allocation of the snapshot, its node (-1: none);
	// byName: schedulable node name -> index. Not set on clones.
	allocNode []int32
	byName    map[string]int32
	// stopping counts the live allocations being stopped (Desired=stop).
	stopping int
	changes  []int32 // node indices whose free capacity changed, in order
	// mark is len(changes) when the current tentative placement began, if
	// every change since is one of its takes (else -1): undo then restores
	// the nodes exactly and rolls the log back instead of growing it, so
	// a placement tried and dropped costs the indexes nothing.
	mark   int
	shapes map[shapeKey]*shape
	plain  map[plainShapeKey]*shape // the same, for plain shapes
	// front caches shapeOf's answers for groups with at most one
	// constraint, direct-mapped; entries of other epochs are empty. A
	// pass made by newPassIn borrows the Scratch's table (Scratch.front),
	// a clone makes its own.
	front      *[frontSize]frontShape
	frontEpoch uint32
	indexes    []*shapeIndex
	matches    map[string][]bool // label-match vectors by canonical constraints
	// labelKeys: every label key a shape's constraints name (classes.go).
	labelKeys map[string]bool
	// extras caches shapeKey.extra per task group of the snapshot.
	extras    map[*model.TaskGroup]string
	lastShape lastShape
	lastLabel string // the label of the last one-constraint shape key
	// static numbers the nodes' static classes (classes.go); shared with
	// clones.
	static *staticClasses

	// seen[n] == round: node n was applied in the current sync.
	seen  []uint32
	round uint32

	// Reused per job: no allocation per task in the placement loop.
	tent        []tentative
	slots       []int
	groupShapes []*shape

	analyses int // reason analyses done (bounded, see reasons.go)

	// noMemo turns the unfit memo off (reading and writing it) while free
	// capacity may have grown since it was recorded: in what-if runs and in
	// future states.
	noMemo bool

	// domains caches the topology domains by label key (topology.go);
	// clones share it, since node indices are the same.
	domains map[string][]domain
	// cls groups the nodes into equivalence classes for scans (classes.go);
	// nil until a scan needs it.
	cls *classes
	// topoFail: per shape and topology label, the smallest gang that fit
	// no domain (topology.go).
	topoFail    map[topoKey]int
	topoReasons map[topoReasonKey]model.Reason
	// rooms: per shape and topology label, tasks that fit per domain
	// (topology.go); roomList the same in creation order.
	rooms    map[topoKey]*roomTable
	roomList []*roomTable

	// sc lends the pass memory (Scratch); clones share it.
	sc *Scratch
}

func newPass(nodes []*model.Node, allocs []*model.Allocation) *pass {
	return newPassIn(&Scratch{}, nodes, allocs)
}

// newPassIn is newPass with its memory taken from sc.
func newPassIn(sc *Scratch, nodes []*model.Node, allocs []*model.Allocation) *pass {
	p := &pass{shapes: make(map[shapeKey]*shape), matches: make(map[string][]bool), mark: -1, sc: sc}
	p.front, p.frontEpoch = sc.frontTable()
	p.nodes, p.unsched, p.allocNode, p.byName, p.stopping = buildNodes(sc, nodes, allocs)
	return p
}

// clone returns a pass over a deep copy of p's node states (no shapes,
// indexes or tentative work): the start of a what-if world, such as the
// cluster at a future time. Without devices the copy tracks no GPU device
// indices (gpuUsed is nil: GPUs are counted only). What depends only on
// the nodes' static properties is shared.
func (p *pass) clone(devices bool) *pass {
	c := &pass{shapes: make(map[shapeKey]*shape), matches: p.matches, unsched: p.unsched, mark: -1,
		labelKeys: maps.Clone(p.labelKeys), static: p.static, extras: p.extras, sc: p.sc}
	if c.extras == nil {
		c.extras = map[*model.TaskGroup]string{}
		p.extras = c.extras
	}
	c.nodes = p.sc.takeNodes(len(p.nodes))
	for i := range p.nodes {
		c.nodes[i] = p.nodes[i].copy(devices)
	}
	return c
}

// scanIn finds the best node for one task of s among the given nodes.
func (p *pass) scanIn(s *shape, nodes []int32) int32 {
	best, bestKey := int32(-1), int64(0)
	for _, i := range nodes {
		nd := &p.nodes[i]
		if !nd.fits(&s.req) || !passesStatic(nd, s) {
			continue
		}
		if k := nodeKey(nd, s); best < 0 || k < bestKey || k == bestKey && i < best {
			best, bestKey = i, k
		}
	}
	return best
}

// shapeFor returns the pass's shape for a task group, creating it on first
// sight.
func (p *pass) shapeFor(g *model.TaskGroup, flavor string, spread bool) *shape {
	// A job's group is looked up several times in a row (quota, placement,
	// reasons): remember the last answer.
	if l := &p.lastShape; l.g == g && l.flavor == flavor && l.spread == spread {
		return l.s
	}
	s := p.shapeOf(g, flavor, spread)
	p.lastShape = lastShape{g: g, flavor: flavor, spread: spread, s: s}
	return s
}

type lastShape struct {
	g      *model.TaskGroup
	flavor string
	spread bool
	s      *shape
}

// frontShape is an entry of pass.front: the shape of groups with these
// resources and this one constraint (or none), with no flavor.
type frontShape struct {
	k     frontKey
	s     *shape
	epoch uint32 // the pass's frontEpoch; 0: empty
}

type frontKey struct {
	plainShapeKey
	label, value string
}

const frontSize = 256

// plainShapeKey is the shapeKey of a group without custom resources or
// constraints and with no flavor: no strings, so it hashes fast.
type plainShapeKey struct {
	cpu, mem, gpu, scratch int64
	spread                 bool
}

func (p *pass) shapeOf(g *model.TaskGroup, flavor string, spread bool) *shape {
	r := &g.Resources
	if flavor != "" || len(r.Custom) > 0 || len(g.Constraints) > 1 {
		return p.shapeOfKeyed(g, flavor, spread)
	}
	// No custom resources, at most one constraint: a direct-mapped table
	// in front of the maps (a long queue repeats a few dozen shapes).
	fk := frontKey{plainShapeKey{r.MilliCPU, r.MemoryBytes, r.GPUs, r.ScratchBytes, spread}, "", ""}
	if len(g.Constraints) == 1 {
		fk.label, fk.value = p.oneConstraint(g)
	}
	h := uint64(fk.cpu)*0x9e3779b97f4a7c15 ^ uint64(fk.mem)*0xc2b2ae3d27d4eb4f ^ uint64(fk.gpu)*0x165667b19e3779f9 ^ uint64(fk.scratch) ^ uint64(len(fk.value))*0x27d4eb2f165667c5
	if fk.value != "" {
		h ^= uint64(fk.value[len(fk.value)-1]) << 13
	}
	if spread {
		h = ^h
	}
	if p.front == nil {
		p.front, p.frontEpoch = new([frontSize]frontShape), 1
	}
	e := &p.front[(h^h>>31)%frontSize]
	if e.epoch == p.frontEpoch && e.k == fk {
		return e.s
	}
	var s *shape
	if len(g.Constraints) == 1 {
		s = p.shapeOfKeyed(g, flavor, spread)
	} else {
		var ok bool
		if s, ok = p.plain[fk.plainShapeKey]; !ok {
			s = p.shapeOfKeyed(g, flavor, spread)
			if p.plain == nil {
				p.plain = map[plainShapeKey]*shape{}
			}
			p.plain[fk.plainShapeKey] = s
		}
	}
	*e = frontShape{fk, s, p.frontEpoch}
	return s
}

// oneConstraint returns the label and value of a group with exactly one
// constraint. Such groups mostly name the same label: a lookup is cheaper
// than ranging over the map.
func (p *pass) oneConstraint(g *model.TaskGroup) (string, string) {
	if v, ok := g.Constraints[p.lastLabel]; ok {
		return p.lastLabel, v
	}
	var label, value string
	for l, v := range g.Constraints {
		label, value = l, v
	}
	p.lastLabel = label
	return label, value
}

func (p *pass) shapeOfKeyed(g *model.TaskGroup, flavor string, spread bool) *shape {
	r := &g.Resources
	k := shapeKey{cpu: r.MilliCPU, mem: r.MemoryBytes, gpu: r.GPUs, scratch: r.ScratchBytes, flavor: flavor, spread: spread}
	if len(r.Custom) == 0 && len(g.Constraints) == 1 {
		k.label, k.value = p.oneConstraint(g)
	} else if len(r.Custom) > 0 || len(g.Constraints) > 0 {
		// The snapshot is read-only during a pass: the group's key is
		// built once.
		extra, ok := p.extras[g]
		if !ok {
			extra = canonical(r.Custom, g.Constraints)
			if p.extras == nil {
				p.extras = map[*model.TaskGroup]string{}
			}
			p.extras[g] = extra
		}
		k.extra = extra
	}
	if s, ok := p.shapes[k]; ok {
		return s
	}
	s := &shape{req: r.Copy(), constraints: g.Constraints, unfit: -1, empty: -1, flavor: flavor, spread: spread}
	if len(g.Constraints) > 0 {
		for k := range g.Constraints {
			if !p.labelKeys[k] {
				if p.labelKeys == nil {
					p.labelKeys = map[string]bool{}
				}
				p.labelKeys[k] = true
				p.cls = nil // classes must now tell this label's values apart
			}
		}
		ck := canonical(nil, g.Constraints)
		s.match = p.matches[ck]
		if s.match == nil {
			s.match = make([]bool, len(p.nodes))
			for i := range p.nodes {
				s.match[i] = hasLabels(p.nodes[i].node, g.Constraints)
			}
			p.matches[ck] = s.match
		}
	}
	p.shapes[k] = s
	return s
}

// canonical encodes custom resources and constraints unambiguously and in
// sorted order, so equal contents give equal keys.
func canonical(custom map[string]int64, cons map[string]string) string {
	var b strings.Builder
	ck := make([]string, 0, len(custom))
	for k := range custom {
		ck = append(ck, k)
	}
	sort.Strings(ck)
	for _, k := range ck {
		b.WriteString("r")
		b.WriteString(strconv.Quote(k))
		b.WriteString(strconv.FormatInt(custom[k], 10))
	}
	lk := make([]string, 0, len(cons))
	for k := range cons {
		lk = append(lk, k)
	}
	sort.Strings(lk)
	for _, k := range lk {
		b.WriteString("l")
		b.WriteString(strconv.Quote(k))
		b.WriteString(strconv.Quote(cons[k]))
	}
	return b.String()
}

// invalidJob explains why a job can never be placed as written, or "".
// The API layer validates jobs; this keeps a bad one from confusing a pass.
func invalidJob(j *model.Job) string {
	if len(j.Groups) == 0 {
		return "job has no task groups"
	}
	total := 0
	for gi := range j.Groups {
		g := &j.Groups[gi]
		if g.Count < 0 {
			return "group " + strconv.Quote(g.Name) + " has a negative task count"
		}
		if d := negative(&g.Resources); d != "" {
			return "group " + strconv.Quote(g.Name) + " requests a negative " + d
		}
		total += g.Count
	}
	if total == 0 {
		return "job has no tasks"
	}
	if j.MinTasks < 0 {
		return "min_tasks must not be negative"
	}
	return ""
}

// placeOpts narrows one placement attempt.
type placeOpts struct {
	// flavor, if set, is the GPU flavor every task that needs GPUs must
	// land on (CPU-only tasks go anywhere).
	flavor string
	// domain, if not nil, restricts the job to these nodes (a topology
	// domain); they are scanned rather than indexed.
	domain []int32
	// gang is how many tasks, in group order, must be placed; tasks after
	// them are placed while they fit. 0 means all.
	gang int
}

// placeJob places every task of j or none, with no options. On success it
// appends the job's placements to out and returns true.
func (p *pass) placeJob(j *model.Job, out *[]Placement) bool {
	if p.tryJob(j, placeOpts{}) == 0 {
		return false
	}
	p.emit(j, out)
	return true
}

// tryJob tentatively places j's tasks (recorded in p.tent, held on the
// nodes). It returns how many tasks it placed: at least the gang size, or 0
// with nothing held. Call emit to keep the placement or undo to drop it.
func (p *pass) tryJob(j *model.Job, o placeOpts) int {
	if len(p.nodes) == 0 || invalidJob(j) != "" {
		return 0
	}
	total := j.TaskCount()
	gang := o.gang
	if gang <= 0 || gang > total {
		gang = total
	}
	spread := j.Placement == model.PlacementSpread
	memo := o.domain == nil && !p.noMemo
	p.groupShapes = p.groupShapes[:0]
	before := 0
	for gi := range j.Groups {
		g := &j.Groups[gi]
		flavor := ""
		if g.Resources.GPUs > 0 {
			flavor = o.flavor
		}
		s := p.shapeFor(g, flavor, spread)
		need := min(g.Count, max(0, gang-before))
		if memo && s.unfit >= 0 && need > s.unfit {
			return 0 // this group alone did not fit earlier; it will not now
		}
		before += g.Count
		p.groupShapes = append(p.groupShapes, s)
	}

	p.tent, p.slots = p.tent[:0], p.slots[:0]
	p.mark = len(p.changes)
	for gi := range j.Groups {
		s := p.groupShapes[gi]
		for t := 0; t < j.Groups[gi].Count; t++ {
			var n int32
			if o.domain != nil {
				n = p.scanIn(s, o.domain)
			} else {
				n = p.best(s)
			}
			if n < 0 {
				if memo && len(p.tent) == t {
					// Only this group's tasks were placed, by best fit, which
					// for identical tasks places as many as can fit at all.
					if s.unfit < 0 || t < s.unfit {
						s.unfit = t
					}
				}
				if len(p.tent) >= gang {
					return len(p.tent)
				}
				p.undo()
				return 0
			}
			p.take(n, s, gi)
		}
	}
	return len(p.tent)
}

// reserve makes room in s for n more elements, at least doubling its
// capacity when it must grow: append grows large slices by 1.25×, which
// for a slice built element by element allocates about five times its
// final size in all.
func reserve[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	return slices.Grow(s, max(n, len(s)))
}

// emit appends the tentative placements of j to out (task indices 0..k-1 in
// group order) and keeps them held.
func (p *pass) emit(j *model.Job, out *[]Placement) {
	*out = reserve(*out, len(p.tent))
	for task, tp := range p.tent {
		g := &j.Groups[tp.group]
		pl := Placement{
			JobID:     j.ID,
			Group:     g.Name,
			TaskIndex: task,
			Node:      p.nodes[tp.node].name,
			Resources: g.Resources.Copy(),
		}
		if tp.slotsEnd > tp.slotsStart {
			pl.GPUIndices = make([]int, 0, tp.slotsEnd-tp.slotsStart)
			for _, sl := range p.slots[tp.slotsStart:tp.slotsEnd] {
				pl.GPUIndices = append(pl.GPUIndices, p.nodes[tp.node].gpuIdx[sl])
			}
		}
		*out = append(*out, pl)
	}
	p.tent, p.slots = p.tent[:0], p.slots[:0]
	p.mark = -1
}

// take places one task of s on node n tentatively: it subtracts the request,
// claims the lowest free GPU indices and records the change.
func (p *pass) take(n int32, s *shape, group int) {
	nd := &p.nodes[n]
	r := &s.req
	nd.cpu -= r.MilliCPU
	nd.mem -= r.MemoryBytes
	nd.gpu -= r.GPUs
	nd.scratch -= r.ScratchBytes
	for k, v := range r.Custom {
		if v != 0 { // fits() saw room, so the node has this resource
			nd.custom[k] -= v
		}
	}
	start := len(p.slots)
	need := r.GPUs
	for i := 0; need > 0 && i < len(nd.gpuUsed); i++ {
		if !nd.gpuUsed[i] {
			nd.gpuUsed[i] = true
			p.slots = append(p.slots, i)
			need--
		}
	}
	nd.freeSlots -= r.GPUs
	nd.refreshShare()
	p.tent = append(p.tent, tentative{node: n, shape: s, group: group, slotsStart: start, slotsEnd: len(p.slots)})
	p.changes = append(reserve(p.changes, 1), n)
}

// undo releases the current job's tentative placements, newest first.
func (p *pass) undo() {
	for i := len(p.tent) - 1; i >= 0; i-- {
		tp := p.tent[i]
		nd := &p.nodes[tp.node]
		r := &tp.shape.req
		nd.cpu += r.MilliCPU
		nd.mem += r.MemoryBytes
		nd.gpu += r.GPUs
		nd.scratch += r.ScratchBytes
		for k, v := range r.Custom {
			if v != 0 {
				nd.custom[k] += v
			}
		}
		for _, sl := range p.slots[tp.slotsStart:tp.slotsEnd] {
			nd.gpuUsed[sl] = false
		}
		nd.freeSlots += r.GPUs
		nd.refreshShare()
		if p.mark < 0 {
			p.changes = append(p.changes, tp.node)
		}
	}
	if p.mark >= 0 {
		p.rollback(p.mark)
	}
	p.tent, p.slots = p.tent[:0], p.slots[:0]
	p.mark = -1
}

// touch records that node n's free capacity changed (other than by take).
func (p *pass) touch(n int32) {
	p.changes = append(reserve(p.changes, 1), n)
	p.mark = -1
}

// rollback forgets the changes from mark on, whose nodes are back in the
// state they had at mark: indexes that already applied some apply them
// again (now to the restored state) and move their cursor back.
func (p *pass) rollback(mark int) {
	for _, ix := range p.indexes {
		if ix.cursor > mark {
			for _, n := range p.changes[mark:ix.cursor] {
				p.apply(ix, n)
			}
			ix.cursor = mark
		}
	}
	for _, t := range p.roomList {
		if t.cursor > mark {
			for _, n := range p.changes[mark:t.cursor] {
				t.apply(p, n)
			}
			t.cursor = mark
		}
	}
	if c := p.cls; c != nil && c.cursor > mark {
		for _, n := range p.changes[mark:c.cursor] {
			c.move(p, n)
		}
		c.cursor = mark
	}
	p.changes = p.changes[:mark]
}

// best returns the node where one task of s goes now, or -1 if none fits.
func (p *pass) best(s *shape) int32 {
	s.uses++
	ix := p.indexFor(s)
	if ix == nil {
		return p.scan(s)
	}
	p.sync(ix)
	if len(ix.heap) == 0 {
		return -1
	}
	return ix.heap[0]
}

// indexFor returns s's index, building one when a slot is free or s has
// earned one (see maxIndexes); nil means: scan.
func (p *pass) indexFor(s *shape) *shapeIndex {
	if s.idx != nil {
		return s.idx
	}
	var ix *shapeIndex
	if len(p.indexes) < maxIndexes(len(p.nodes)) {
		n := len(p.nodes)
		ix = p.sc.takeIndex(n)
		p.indexes = append(p.indexes, ix)
	} else {
		ix = p.indexes[0]
		for _, c := range p.indexes[1:] {
			if c.owner.uses < ix.owner.uses {
				ix = c
			}
		}
		if s.uses <= 2*ix.owner.uses {
			return nil
		}
		ix.owner.idx = nil
	}
	ix.owner = s
	s.idx = ix
	p.rebuild(ix)
	return ix
}

// scan finds the best node for one task of s by looking at every node: what
// an index does, without keeping anything.
func (p *pass) scan(s *shape) int32 {
	if n, ok := p.scanClasses(s); ok {
		return n
	}
	best, bestKey := int32(-1), int64(0)
	for i := range p.nodes {
		nd := &p.nodes[i]
		if !nd.fits(&s.req) || !passesStatic(nd, s) {
			continue
		}
		if k := nodeKey(nd, s); best < 0 || k < bestKey {
			best, bestKey = int32(i), k
		}
	}
	return best
}

// rebuild fills ix from scratch: static filters, fit and key for every node,
// then heapify.
func (p *pass) rebuild(ix *shapeIndex) {
	s := ix.owner
	ix.heap = ix.heap[:0]
	for i := range p.nodes {
		nd := &p.nodes[i]
		ix.pos[i] = excluded
		if !passesStatic(nd, s) {
			continue
		}
		ix.pos[i] = notInHeap
		if nd.fits(&s.req) {
			ix.key[i] = nodeKey(nd, s)
			ix.pos[i] = int32(len(ix.heap))
			ix.heap = append(ix.heap, int32(i))
		}
	}
	for i := len(ix.heap)/2 - 1; i >= 0; i-- {
		ix.down(i)
	}
	ix.cursor = len(p.changes)
}

// passesStatic is staticFilters, written out: index builds run it for
// every node (calls through the list cost more than the filters).
// TestPassesStaticIsTheFilters holds the two equal; change both together.
func passesStatic(nd *nodeState, s *shape) bool {
	return matchesConstraints(nd, s) && matchesFlavor(nd, s) && capacityEverEnough(nd, s)
}

// staticFiltersPass runs the staticFilters list: the definition.
func staticFiltersPass(nd *nodeState, s *shape) bool {
	for _, f := range staticFilters {
		if !f(nd, s) {
			return false
		}
	}
	return true
}

// sync applies the node changes ix has not seen. Past a point a rebuild is
// cheaper than replaying.
func (p *pass) sync(ix *shapeIndex) {
	pending := p.changes[ix.cursor:]
	if len(pending) == 0 {
		return
	}
	if len(pending) > len(p.nodes)/2+8 {
		p.rebuild(ix)
		return
	}
	// A node changed several times since (best fit fills a node task by
	// task) is brought up to date once.
	if p.seen == nil {
		p.seen = make([]uint32, len(p.nodes))
	}
	if p.round++; p.round == 0 { // wrapped
		clear(p.seen)
		p.round = 1
	}
	for _, n := range pending {
		if p.seen[n] != p.round {
			p.seen[n] = p.round
			p.apply(ix, n)
		}
	}
	ix.cursor = len(p.changes)
}

// apply brings node n's entry in ix up to date.
func (p *pass) apply(ix *shapeIndex, n int32) {
	if ix.pos[n] == excluded {
		return
	}
	s := ix.owner
	nd := &p.nodes[n]
	at := ix.pos[n]
	if !nd.fits(&s.req) {
		if at >= 0 {
			ix.remove(int(at))
		}
		return
	}
	k := nodeKey(nd, s)
	if at < 0 {
		ix.key[n] = k
		ix.pos[n] = int32(len(ix.heap))
		ix.heap = append(ix.heap, n)
		ix.up(len(ix.heap) - 1)
		return
	}
	old := ix.key[n]
	ix.key[n] = k
	if k < old {
		ix.up(int(at))
	} else if k > old {
		ix.down(int(at))
	}
}

func (ix *shapeIndex) less(a, b int32) bool {
	ka, kb := ix.key[a], ix.key[b]
	return ka < kb || ka == kb && a < b
}

func (ix *shapeIndex) swap(i, j int) {
	h := ix.heap
	h[i], h[j] = h[j], h[i]
	ix.pos[h[i]] = int32(i)
	ix.pos[h[j]] = int32(j)
}

func (ix *shapeIndex) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !ix.less(ix.heap[i], ix.heap[parent]) {
			return
		}
		ix.swap(i, parent)
		i = parent
	}
}

func (ix *shapeIndex) down(i int) {
	n := len(ix.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && ix.less(ix.heap[r], ix.heap[l]) {
			m = r
		}
		if !ix.less(ix.heap[m], ix.heap[i]) {
			return
		}
		ix.swap(i, m)
		i = m
	}
}

// remove takes the entry at heap position i out. The hole moves down to
// a leaf along the smaller children (one comparison a level), then the
// last entry fills it and sifts up: it comes from the bottom and mostly
// stays there, so this costs half the comparisons of sifting it down from
// i (nodes leave an index whenever they fill up).
func (ix *shapeIndex) remove(i int) {
	h := ix.heap
	last := len(h) - 1
	ix.pos[h[i]] = notInHeap
	x := h[last]
	h = h[:last]
	ix.heap = h
	if i == last {
		return
	}
	for {
		l := 2*i + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && ix.less(h[r], h[l]) {
			m = r
		}
		h[i] = h[m]
		ix.pos[h[i]] = int32(i)
		i = m
	}
	h[i] = x
	ix.pos[x] = int32(i)
	ix.up(i)
}
