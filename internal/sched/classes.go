package sched

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Node equivalence classes. Nodes with the same capacity, GPU flavor and
// values of the labels some shape's constraints name (a static class) pass
// the same static filters for every shape;
// those of a static class that also have the same free amounts (and
// reservation marks) score the same for every shape. A scan for a shape
// without an index then looks at one node per such bucket instead of at
// every node: on a cluster of a few node types, with best fit filling a few
// nodes at a time, that is a handful of buckets rather than thousands of
// nodes. This is what keeps many distinct task shapes (more than
// maxIndexes) fast. On a cluster where every node's free state differs the
// buckets are as many as the nodes, and the plain scan is used.

type dynKey struct {
	class                  int32
	cpu, mem, gpu, scratch int64
	slots                  int64
	reserved               bool
	nowShare               int64
	custom                 string
}

// bucket is the nodes of one dynKey, by index (so the first is the one
// that sorts first by name), with the key inline for a fast fit test.
type bucket struct {
	k     dynKey
	nodes []int32
	at    int // position in classes.list
}

type classes struct {
	static  []int32 // per node: static class
	nclass  int
	buckets map[dynKey]*bucket
	list    []*bucket // the same, for iteration (order irrelevant)
	key     []dynKey  // per node: its current bucket key
	cursor  int       // how much of pass.changes has been applied
	// ok caches, per shape, whether each static class passes its static
	// filters: 0 unknown, 1 yes, 2 no.
	ok map[*shape][]int8
}

// buildClasses groups the nodes.
func (p *pass) buildClasses() *classes {
	st := p.staticClasses()
	c := &classes{static: st.of, nclass: st.n, buckets: map[dynKey]*bucket{}, key: make([]dynKey, len(p.nodes)), ok: map[*shape][]int8{}}
	for i := range p.nodes {
		k := c.keyOf(&p.nodes[i])
		c.key[i] = k
		b := c.get(k)
		b.nodes = append(b.nodes, int32(i)) // ascending: i grows
	}
	c.cursor = len(p.changes)
	return c
}

// staticClasses numbers the nodes' static classes: capacity, flavor,
// custom capacity, and the values of the labels in labelKeys (labels no
// constraint names, such as a rack or a hostname, cannot tell nodes apart
// for any shape of the pass). The numbering is shared with clones of the
// pass while their label keys are the same.
func (p *pass) staticClasses() *staticClasses {
	keys := make([]string, 0, len(p.labelKeys))
	for k := range p.labelKeys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	id := strings.Join(keys, "\x00")
	if st := p.static; st != nil && st.keys == id {
		return st
	}
	st := &staticClasses{keys: id, of: make([]int32, len(p.nodes))}
	// Refine a label at a time: no key strings built per node.
	type base struct {
		capClass int32
		flavor   string
		custom   string
	}
	ids := map[base]int32{}
	for i := range p.nodes {
		nd := &p.nodes[i]
		b := base{capClass: nd.capClass, flavor: nd.flavor}
		if len(nd.node.Capacity.Custom) > 0 {
			b.custom = canonical(nd.node.Capacity.Custom, nil)
		}
		c, ok := ids[b]
		if !ok {
			c = int32(len(ids))
			ids[b] = c
		}
		st.of[i] = c
	}
	st.n = len(ids)
	for _, k := range keys {
		type refined struct {
			class int32
			value string
			has   bool
		}
		next := map[refined]int32{}
		for i := range p.nodes {
			v, has := p.nodes[i].node.Labels[k]
			r := refined{st.of[i], v, has}
			c, ok := next[r]
			if !ok {
				c = int32(len(next))
				next[r] = c
			}
			st.of[i] = c
		}
		st.n = len(next)
	}
	st.rep = make([]int32, st.n)
	st.size = make([]int64, st.n)
	for i := len(p.nodes) - 1; i >= 0; i-- {
		st.rep[st.of[i]] = int32(i)
		st.size[st.of[i]]++
	}
	p.static = st
	return st
}

// staticClasses is a numbering of the nodes by static class.
type staticClasses struct {
	keys string  // the label keys it tells apart, joined
	of   []int32 // per node
	n    int
	rep  []int32 // per class: its first node
	size []int64 // per class: its nodes
}

func (c *classes) keyOf(n *nodeState) dynKey {
	k := dynKey{class: c.static[n.index], cpu: n.cpu, mem: n.mem, gpu: n.gpu, scratch: n.scratch,
		slots: n.freeSlots, reserved: n.reserved > 0, nowShare: n.nowShare}
	if len(n.custom) > 0 {
		keys := make([]string, 0, len(n.custom))
		for name := range n.custom {
			keys = append(keys, name)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, name := range keys {
			b.WriteString(strconv.Quote(name))
			b.WriteString(strconv.FormatInt(n.custom[name], 10))
		}
		k.custom = b.String()
	}
	return k
}

// get returns the bucket of k, creating it.
func (c *classes) get(k dynKey) *bucket {
	b := c.buckets[k]
	if b == nil {
		b = &bucket{k: k, at: len(c.list)}
		c.buckets[k] = b
		c.list = append(c.list, b)
	}
	return b
}

// sync moves the nodes that changed since the last use to their buckets.
func (p *pass) syncClasses() {
	c := p.cls
	for _, n := range p.changes[c.cursor:] {
		c.move(p, n)
	}
	c.cursor = len(p.changes)
}

// move puts node n in the bucket of its current state.
func (c *classes) move(p *pass, n int32) {
	k := c.keyOf(&p.nodes[n])
	old := c.key[n]
	if k == old {
		return
	}
	if b := c.buckets[old]; b != nil {
		if i, found := slices.BinarySearch(b.nodes, n); found {
			b.nodes = slices.Delete(b.nodes, i, i+1)
		}
		if len(b.nodes) == 0 {
			delete(c.buckets, old)
			last := c.list[len(c.list)-1]
			c.list[b.at], last.at = last, b.at
			c.list = c.list[:len(c.list)-1]
		}
	}
	b := c.get(k)
	i, _ := slices.BinarySearch(b.nodes, n)
	b.nodes = slices.Insert(b.nodes, i, n)
	c.key[n] = k
}

// scanClasses is scan by buckets: the best bucket's first node, or -1. It
// returns ok=false when the buckets are too many to be worth it.
func (p *pass) scanClasses(s *shape) (int32, bool) {
	if p.cls == nil {
		if len(p.nodes) < 64 {
			return -1, false
		}
		p.cls = p.buildClasses()
	}
	p.syncClasses()
	c := p.cls
	if len(c.buckets) > len(p.nodes)/4 {
		return -1, false
	}
	ok := c.ok[s]
	if ok == nil {
		ok = make([]int8, c.nclass)
		c.ok[s] = ok
	}
	best, bestKey := int32(-1), int64(0)
	r := &s.req
	for _, b := range c.list {
		// The fit test on the key first: no node state to load.
		if k := &b.k; r.MilliCPU > k.cpu || r.MemoryBytes > k.mem || r.ScratchBytes > k.scratch || r.GPUs > k.gpu || r.GPUs > k.slots {
			continue
		}
		n := b.nodes[0]
		nd := &p.nodes[n]
		cl := c.static[n]
		if ok[cl] == 0 {
			// The constraint match is per node (shape.match) but equal
			// labels give equal answers.
			ok[cl] = 2
			if passesStatic(nd, s) {
				ok[cl] = 1
			}
		}
		if ok[cl] != 1 || !nd.fits(&s.req) {
			continue
		}
		if k := nodeKey(nd, s); best < 0 || k < bestKey || k == bestKey && n < best {
			best, bestKey = n, k
		}
	}
	return best, true
}
