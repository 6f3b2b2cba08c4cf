package sched

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/durehq/dure/internal/model"
)

// The queue tree and its quota arithmetic (PolicyDure). Per resource key
// ("cpu", "gpu/H100", …), for every queue n that governs the key (n or a
// queue below it has a quota for it):
//
//	nominal(n)  own Quota.Nominal (0 if none)
//	effN(n)     nominal(n) + Σ effN(c) over children c that govern the key
//	used(n)     what running jobs of n's subtree hold
//	prot(n)     the part of n's unused effN it does not lend:
//	            max(0, max(0, effN(n)-used(n)) - LendingLimit(n)), 0 without a limit
//
// and the room a queue a has to grow its subtree usage is, walking down
// from its root r (which governs the key, or nothing does: no limit):
//
//	room(r) = effN(r) - used(r)
//	room(c) = room(parent) - Σ prot(s) over c's siblings s
//	room(c) = min(room(c), effN(c) + BorrowingLimit(c) - used(c))
//
// A job in a may use room(a) - Σ prot(children of a). So a queue can always
// use its siblings' unused quota (borrowing) up to its borrowing limit,
// except what they do not lend; and it never gets more than its root's
// effective nominal quota.

const unlimited = math.MaxInt64 / 4

type qres struct {
	nominal, effN int64
	borrow, lend  int64 // -1: no limit
	used          int64
	prot          int64
	childProt     int64
}

type qnode struct {
	name     string
	q        *model.Queue // nil for a queue named by jobs but not configured
	parent   *qnode
	children []*qnode
	weight   float64
	res      map[string]*qres // governed keys
	// rs is res by key index (queueTree.keyNames), nil where not governed:
	// the pass's quota arithmetic indexes it rather than hashing names.
	rs   []*qres
	root *qnode // the top of n's tree
	// rooms caches room per key while roomsAt is the tree's version.
	rooms   []int64
	roomsAt int64
	// flavors caches gpuFlavors (flavorsSet: computed).
	flavors    []string
	flavorsSet bool

	// fair share: usage now and decayed past usage, in cpu, memory, gpu;
	// share caches fair.queueShare while shareOK.
	cur, dec [3]float64
	share    float64
	shareOK  bool
	// pending work in the subtree (jobs not yet considered this pass)
	pending int
	src     *source // this queue's own pending jobs, if any
	// liveAllocs counts the queue's live allocations and minPrio is their
	// lowest priority (fair.load), for preemptor.noCandidates.
	liveAllocs, minPrio int
	// hasReady: some job of this queue passed the gate (dure.gather);
	// parked: its next job would borrow, so the rest wait behind it.
	hasReady, parked bool
}

// queueTree is the queues of one pass.
type queueTree struct {
	byName map[string]*qnode
	roots  []*qnode
	// flavored: resource names that have flavored quota keys ("gpu" when
	// some queue has a "gpu/…" quota).
	flavored map[string]bool
	keys     map[string]bool // every governed key
	// keyNames numbers the governed keys in sorted order (a demand is
	// indexed by it); keyIdx is the inverse.
	keyNames []string
	keyIdx   map[string]int
	// base: the key indices of cpu, memory, gpu and scratch, -1 where not
	// governed (no map lookup per task group).
	base [4]int
	// nodeKeys caches, per node, the flavored keys its resources count
	// against.
	nodeKeys map[*model.Node][]flavorKey
	// version counts usage changes (charge): roomOf caches while it holds.
	version int64
	// blocked caches blockMessage while the queue's tree is unchanged (a
	// long queue repeats the same few messages).
	blocked map[blockKey]*quotaBlock
	last    *qnode // node's last answer
}

// flavorKey: a node's resource res (cpu, memory, gpu, scratch or a custom
// name) counts against the flavored key k as well.
type flavorKey struct {
	res string
	k   int
}

// blockKey is everything blockMessageOf reads that changes in a pass:
// the room, the queue's usage, and that of the first ancestor governing
// the key when the queue does not.
type blockKey struct {
	a                     *qnode
	k                     int
	need, room, used, anc int64
}

// uniqueQueues picks one queue per name. Names are unique in the state
// store; should two ever collide, the pick must not depend on their order:
// the one with the lowest CreateIndex, then ModifyIndex, then the smallest
// printed form.
func uniqueQueues(queues []*model.Queue) map[string]*model.Queue {
	out := make(map[string]*model.Queue, len(queues))
	for _, q := range queues {
		if q == nil {
			continue
		}
		if o := out[q.Name]; o == nil || queueBefore(q, o) {
			out[q.Name] = q
		}
	}
	return out
}

func queueBefore(a, b *model.Queue) bool {
	if a.CreateIndex != b.CreateIndex {
		return a.CreateIndex < b.CreateIndex
	}
	if a.ModifyIndex != b.ModifyIndex {
		return a.ModifyIndex < b.ModifyIndex
	}
	return fmt.Sprintf("%+v", *a) < fmt.Sprintf("%+v", *b)
}

func newQueueTree(queues map[string]*model.Queue) *queueTree {
	t := &queueTree{byName: map[string]*qnode{}, flavored: map[string]bool{}, keys: map[string]bool{}}
	for name, q := range queues {
		t.byName[name] = &qnode{name: name, q: q, weight: q.EffectiveWeight(), res: map[string]*qres{}}
	}
	names := make([]string, 0, len(t.byName))
	for n := range t.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		n := t.byName[name]
		if p := t.byName[n.q.Parent]; p != nil && n.q.Parent != name && !t.isAncestor(n, p) {
			n.parent = p
			p.children = append(p.children, n)
		} else {
			t.roots = append(t.roots, n)
		}
	}
	for _, r := range t.roots {
		t.govern(r)
	}
	t.keyNames = make([]string, 0, len(t.keys))
	for k := range t.keys {
		t.keyNames = append(t.keyNames, k)
	}
	sort.Strings(t.keyNames)
	t.keyIdx = make(map[string]int, len(t.keyNames))
	for i, k := range t.keyNames {
		t.keyIdx[k] = i
	}
	for i, k := range baseKeys {
		t.base[i] = -1
		if x, ok := t.keyIdx[k]; ok {
			t.base[i] = x
		}
	}
	for _, n := range t.byName {
		t.index(n)
	}
	return t
}

// index fills n.rs and n.root.
func (t *queueTree) index(n *qnode) {
	n.rs = make([]*qres, len(t.keyNames))
	for k, r := range n.res {
		n.rs[t.keyIdx[k]] = r
	}
	n.root = n
	for n.root.parent != nil {
		n.root = n.root.parent
	}
}

var baseKeys = [4]string{"cpu", "memory", "gpu", "scratch"}

// isAncestor reports whether a is an ancestor of (or is) b.
func (t *queueTree) isAncestor(a, b *qnode) bool {
	for n := b; n != nil; n = n.parent {
		if n == a {
			return true
		}
	}
	return false
}

// govern fills res (nominal, limits, effN) bottom up.
func (t *queueTree) govern(n *qnode) {
	for _, c := range n.children {
		t.govern(c)
	}
	for _, qu := range n.q.Quotas {
		if qu.Resource == "" || n.res[qu.Resource] != nil {
			continue
		}
		r := &qres{nominal: max(qu.Nominal, 0), borrow: -1, lend: -1}
		if qu.BorrowingLimit != nil {
			r.borrow = max(*qu.BorrowingLimit, 0)
		}
		if qu.LendingLimit != nil {
			r.lend = max(*qu.LendingLimit, 0)
		}
		n.res[qu.Resource] = r
	}
	for _, c := range n.children {
		for k, cr := range c.res {
			r := n.res[k]
			if r == nil {
				r = &qres{borrow: -1, lend: -1}
				n.res[k] = r
			}
			r.effN += cr.effN
		}
	}
	for k, r := range n.res {
		r.effN += r.nominal
		r.prot = protOf(r)
		t.keys[k] = true
		if res, _, ok := strings.Cut(k, "/"); ok {
			t.flavored[res] = true
		}
	}
	for _, c := range n.children {
		for k, cr := range c.res {
			n.res[k].childProt += cr.prot
		}
	}
}

func protOf(r *qres) int64 {
	if r.lend < 0 {
		return 0
	}
	return max(0, max(0, r.effN-r.used)-r.lend)
}

// node returns the queue a job or allocation names; an unknown name gets
// an unlimited root queue of its own.
func (t *queueTree) node(name string) *qnode {
	if name == "" {
		name = model.DefaultQueue
	}
	// Jobs of one queue often come in a row (fair share picks a queue for
	// several jobs): remember the last answer.
	if t.last != nil && t.last.name == name {
		return t.last
	}
	n := t.byName[name]
	if n == nil {
		n = &qnode{name: name, weight: 1, res: map[string]*qres{}}
		t.byName[name] = n
		t.roots = append(t.roots, n)
		t.index(n)
	}
	t.last = n
	return n
}

// demand is an amount per governed quota key, indexed as
// queueTree.keyNames (newDemand).
type demand []int64

func (t *queueTree) newDemand() demand { return make(demand, len(t.keyNames)) }

// demandOf adds what tasks hold in quota terms to into: the base keys and,
// for resources with flavored quotas, the node's flavor key.
func (t *queueTree) demandOf(r *model.Resources, count int64, node *model.Node, into demand) {
	if len(t.keyNames) == 0 {
		return // no quotas anywhere
	}
	for i, v := range [4]int64{r.MilliCPU, r.MemoryBytes, r.GPUs, r.ScratchBytes} {
		if v != 0 && t.base[i] >= 0 {
			into[t.base[i]] += v * count
		}
	}
	for k, v := range r.Custom {
		if x, ok := t.keyIdx[k]; ok && v != 0 {
			into[x] += v * count
		}
	}
	if node == nil || len(t.flavored) == 0 {
		return
	}
	for _, fk := range t.flavorKeys(node) {
		var v int64
		switch fk.res {
		case "cpu":
			v = r.MilliCPU
		case "memory":
			v = r.MemoryBytes
		case "gpu":
			v = r.GPUs
		case "scratch":
			v = r.ScratchBytes
		default:
			v = r.Custom[fk.res]
		}
		if v != 0 {
			into[fk.k] += v * count
		}
	}
}

// flavorKeys lists the governed flavored keys a node's resources count
// against (cached per node).
func (t *queueTree) flavorKeys(node *model.Node) []flavorKey {
	if fks, ok := t.nodeKeys[node]; ok {
		return fks
	}
	var fks []flavorKey
	for res := range t.flavored {
		var f string
		if res == "gpu" {
			f = nodeFlavor(node)
		} else {
			f = node.Labels[FlavorLabel(res)]
		}
		if f == "" {
			continue
		}
		if x, ok := t.keyIdx[res+"/"+f]; ok {
			fks = append(fks, flavorKey{res, x})
		}
	}
	if t.nodeKeys == nil {
		t.nodeKeys = map[*model.Node][]flavorKey{}
	}
	t.nodeKeys[node] = fks
	return fks
}

// charge adds d (times sign) to the usage of a and its ancestors.
func (t *queueTree) charge(a *qnode, d demand, sign int64) {
	t.version++
	for k, v := range d {
		if v == 0 {
			continue
		}
		for n := a; n != nil; n = n.parent {
			r := n.rs[k]
			if r == nil {
				continue
			}
			r.used += sign * v
			old := r.prot
			r.prot = protOf(r)
			if n.parent != nil && old != r.prot {
				if pr := n.parent.rs[k]; pr != nil {
					pr.childProt += r.prot - old
				}
			}
		}
	}
}

// room is how much more of key k a job in queue a may use (unlimited if
// nothing governs k).
func (t *queueTree) room(a *qnode, k int) int64 {
	var buf [8]*qnode // trees are shallow: no allocation
	chain := buf[:0]
	for n := a; n != nil; n = n.parent {
		chain = append(chain, n)
	}
	root := chain[len(chain)-1]
	rr := root.rs[k]
	if rr == nil {
		return unlimited
	}
	h := rr.effN - rr.used
	if rr.borrow >= 0 {
		h = min(h, rr.effN+rr.borrow-rr.used)
	}
	for i := len(chain) - 2; i >= 0; i-- {
		c, p := chain[i], chain[i+1]
		cr, pr := c.rs[k], p.rs[k]
		own := int64(0)
		if cr != nil {
			own = cr.prot
		}
		h -= pr.childProt - own
		if cr != nil && cr.borrow >= 0 {
			h = min(h, cr.effN+cr.borrow-cr.used)
		}
	}
	if ar := a.rs[k]; ar != nil {
		h -= ar.childProt
	}
	return h
}

// roomOf is room(a, k), computed for every key of a at once and kept
// until usage changes: a long queue asks for the same queues' rooms over
// and over between starts.
func (t *queueTree) roomOf(a *qnode, k int) int64 {
	if a.rooms == nil || a.roomsAt != t.version {
		if a.rooms == nil {
			a.rooms = make([]int64, len(t.keyNames))
		}
		for i := range a.rooms {
			a.rooms[i] = t.room(a, i)
		}
		a.roomsAt = t.version
	}
	return a.rooms[k]
}

// admits reports whether queue a has room for d, and if not the first key
// (in sorted order) that lacks it.
func (t *queueTree) admits(a *qnode, d demand) (bool, int) {
	for k, x := range d {
		if x > 0 && x > t.roomOf(a, k) {
			return false, k
		}
	}
	return true, -1
}

// quotaBlock is why a queue cannot take more of a key (blockMessage), and
// the reason of the jobs left for it.
type quotaBlock struct {
	msg  string
	wrap func(model.Reason) model.Reason
}

// blockMessage explains why queue a cannot take need more of key k, naming
// the level that binds: "queue vision at nominal 16/16 gpu, cohort research
// has 0 to lend".
func (t *queueTree) blockMessage(a *qnode, k int, need int64) *quotaBlock {
	bk := blockKey{a: a, k: k, need: need, room: t.roomOf(a, k)}
	if ar := a.rs[k]; ar != nil {
		bk.used = ar.used
	} else {
		for n := a.parent; n != nil; n = n.parent {
			if r := n.rs[k]; r != nil {
				bk.anc = r.used
				break
			}
		}
	}
	if b, ok := t.blocked[bk]; ok {
		return b
	}
	if t.blocked == nil || len(t.blocked) > 4096 {
		t.blocked = map[blockKey]*quotaBlock{}
	}
	msg := t.blockMessageOf(a, k, need)
	b := &quotaBlock{msg: msg, wrap: func(model.Reason) model.Reason { return model.Reason{Code: model.ReasonQuota, Message: msg} }}
	t.blocked[bk] = b
	return b
}

func (t *queueTree) blockMessageOf(a *qnode, ki int, need int64) string {
	k := t.keyNames[ki]
	amt := func(v int64) string { return formatKey(k, v) }
	room := max(t.room(a, ki), 0)
	ar := a.rs[ki]
	// The queue's own borrowing limit binds?
	if ar != nil && ar.borrow >= 0 && ar.effN+ar.borrow-ar.used < need {
		return fmt.Sprintf("queue %s is at its borrowing limit: uses %s of %s nominal + %s borrowable %s; needs %s more",
			a.name, amt(ar.used), amt(ar.effN), amt(ar.borrow), k, amt(need))
	}
	if ar != nil && a.parent != nil {
		lend := max(room-max(0, ar.effN-ar.used), 0)
		return fmt.Sprintf("queue %s at %s %s/%s %s, cohort %s has %s to lend; needs %s",
			a.name, nominalWord(ar), amt(ar.used), amt(ar.effN), k, a.parent.name, amt(lend), amt(need))
	}
	if ar != nil {
		return fmt.Sprintf("queue %s at %s %s/%s %s; needs %s", a.name, nominalWord(ar), amt(ar.used), amt(ar.effN), k, amt(need))
	}
	// Governed above: the binding level is an ancestor.
	for n := a.parent; n != nil; n = n.parent {
		if r := n.rs[ki]; r != nil {
			return fmt.Sprintf("cohort %s has %s %s left for queue %s (uses %s of %s); needs %s",
				n.name, amt(room), k, a.name, amt(r.used), amt(r.effN), amt(need))
		}
	}
	return fmt.Sprintf("queue %s has %s %s left; needs %s", a.name, amt(room), k, amt(need))
}

func nominalWord(r *qres) string {
	if r.used > r.effN {
		return "more than nominal"
	}
	return "nominal"
}

// formatKey renders an amount of a quota key the way people write it.
func formatKey(k string, v int64) string {
	res, _, _ := strings.Cut(k, "/")
	switch res {
	case "cpu":
		return model.FormatMilliCPU(v)
	case "memory", "scratch":
		return model.FormatBytes(v)
	}
	return fmt.Sprint(v)
}

// gpuFlavors lists the GPU flavors a job in queue a may use, in the order
// the queue (then its ancestors) lists their quotas; nil when no flavored
// GPU quota applies (any node will do).
func (t *queueTree) gpuFlavors(a *qnode) []string {
	if !t.flavored["gpu"] {
		return nil
	}
	if a.flavorsSet {
		return a.flavors
	}
	a.flavors, a.flavorsSet = t.gpuFlavorsOf(a), true
	return a.flavors
}

func (t *queueTree) gpuFlavorsOf(a *qnode) []string {
	var out []string
	seen := map[string]bool{}
	for n := a; n != nil; n = n.parent {
		if n.q == nil {
			continue
		}
		for _, qu := range n.q.Quotas {
			if f, ok := strings.CutPrefix(qu.Resource, "gpu/"); ok && !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out
}
