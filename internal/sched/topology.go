package sched

import (
	"fmt"
	"sort"

	"github.com/durehq/dure/internal/model"
)

// A topology domain is the set of schedulable nodes sharing one value of a
// label (a rack, an InfiniBand leaf). A job with Topology set places all its
// tasks inside one domain: the one that holds its gang most tightly.

type domain struct {
	value string
	nodes []int32 // ascending
}

// domainsFor returns the domains of a label key, by value.
func (p *pass) domainsFor(key string) []domain {
	if p.domains == nil {
		p.domains = map[string][]domain{}
	}
	if d, ok := p.domains[key]; ok {
		return d
	}
	byValue := map[string][]int32{}
	for i := range p.nodes {
		if v, ok := p.nodes[i].node.Labels[key]; ok {
			byValue[v] = append(byValue[v], int32(i))
		}
	}
	out := make([]domain, 0, len(byValue))
	for v, ns := range byValue {
		out = append(out, domain{value: v, nodes: ns})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].value < out[b].value })
	p.domains[key] = out
	return out
}

// placeAny places j by its own rules (gang size, topology) with options o.
func (pl *planner) placeAny(p *pass, j *model.Job, o placeOpts) int {
	return placeAny(p, j, o)
}

func placeAny(p *pass, j *model.Job, o placeOpts) int {
	if o.gang == 0 {
		o.gang = j.GangSize()
	}
	if j.Topology == "" || o.domain != nil {
		return p.tryJob(j, o)
	}
	// A one-group job that fit no domain: a later one of the same shape and
	// label needing as many tasks fits none either (room only shrinks).
	var memo topoKey
	if len(j.Groups) == 1 && !p.noMemo {
		g := &j.Groups[0]
		memo = topoKey{p.shapeFor(g, flavorFor(g, o.flavor), j.Placement == model.PlacementSpread), j.Topology}
		if need, failed := p.topoFail[memo]; failed && o.gang >= need {
			return 0
		}
	}
	for _, c := range p.domainRoom(j, o) {
		if c.spare < 0 {
			break
		}
		o.domain = c.d.nodes
		if k := p.tryJob(j, o); k > 0 {
			return k
		}
	}
	if memo.s != nil {
		if p.topoFail == nil {
			p.topoFail = map[topoKey]int{}
		}
		if need, failed := p.topoFail[memo]; !failed || o.gang < need {
			p.topoFail[memo] = o.gang
		}
	}
	return 0
}

type topoKey struct {
	s     *shape
	label string
}

// domainFit is how a job's largest group fits in a domain now.
type domainFit struct {
	d     *domain
	room  int64 // tasks of the primary group that fit in the domain now
	need  int64 // tasks of it the gang needs
	spare int64 // room - need; negative: the domain cannot hold the gang
}

// domainRoom rates every domain for j: tightest first among those that
// could hold the gang (by a count of tasks that fit, group by group), then
// the ones that cannot, roomiest first.
func (p *pass) domainRoom(j *model.Job, o placeOpts) []domainFit {
	doms := p.domainsFor(j.Topology)
	spread := j.Placement == model.PlacementSpread
	gang := o.gang
	if gang <= 0 {
		gang = j.GangSize()
	}
	primary := primaryGroup(j)
	out := make([]domainFit, 0, len(doms))
	for di := range doms {
		d := &doms[di]
		fit := domainFit{d: d, spare: 1 << 62}
		left := gang
		for gi := range j.Groups {
			g := &j.Groups[gi]
			need := int64(min(g.Count, left))
			left -= int(need)
			if need == 0 {
				continue
			}
			s := p.shapeFor(g, flavorFor(g, o.flavor), spread)
			var room int64
			if t := p.roomsFor(s, j.Topology); t != nil {
				room = t.room[di]
			} else {
				for _, n := range d.nodes {
					room += p.nodeRoom(n, s)
				}
			}
			if gi == primary {
				fit.room, fit.need = room, need
			}
			fit.spare = min(fit.spare, room-need)
		}
		out = append(out, fit)
	}
	sort.SliceStable(out, func(a, b int) bool {
		x, y := out[a], out[b]
		if (x.spare >= 0) != (y.spare >= 0) {
			return x.spare >= 0
		}
		if x.spare >= 0 {
			return x.spare < y.spare
		}
		return x.spare > y.spare
	})
	return out
}

// roomTable is, for one shape and topology label, how many tasks of the
// shape fit now on each node and in each domain. Like a shape index it is
// kept current from the change log, so rating the domains for a gang costs
// one look per domain rather than a scan of every node.
type roomTable struct {
	dom     []int32 // per node: its domain, or -1 (no label, or static filters fail)
	contrib []int64 // per node: tasks that fit there now
	room    []int64 // per domain: the sum of contrib
	s       *shape
	cursor  int // how much of pass.changes has been applied
}

// maxRoomTables bounds the room tables of a pass (16 bytes per node each);
// past it, domains are rated by scanning their nodes.
const maxRoomTables = 64

// roomsFor returns the up-to-date room table of s and label, building it
// on first use; nil when the pass has too many.
func (p *pass) roomsFor(s *shape, label string) *roomTable {
	k := topoKey{s, label}
	if t := p.rooms[k]; t != nil {
		for _, n := range p.changes[t.cursor:] {
			t.apply(p, n)
		}
		t.cursor = len(p.changes)
		return t
	}
	if len(p.rooms) >= maxRoomTables {
		return nil
	}
	doms := p.domainsFor(label)
	t := p.sc.takeRooms(len(p.nodes), len(doms))
	t.s = s
	for i := range t.dom {
		t.dom[i] = -1
	}
	for di := range doms {
		for _, n := range doms[di].nodes {
			if passesStatic(&p.nodes[n], s) {
				t.dom[n] = int32(di)
				t.contrib[n], _ = tasksFit(&p.nodes[n], &s.req)
				t.room[di] += t.contrib[n]
			}
		}
	}
	t.cursor = len(p.changes)
	if p.rooms == nil {
		p.rooms = map[topoKey]*roomTable{}
	}
	p.rooms[k] = t
	p.roomList = append(p.roomList, t)
	return t
}

// apply brings node n's count up to date.
func (t *roomTable) apply(p *pass, n int32) {
	d := t.dom[n]
	if d < 0 {
		return
	}
	c, _ := tasksFit(&p.nodes[n], &t.s.req)
	t.room[d] += c - t.contrib[n]
	t.contrib[n] = c
}

// nodeRoom is how many tasks of s fit on node n now (0 when n fails a
// static filter).
func (p *pass) nodeRoom(n int32, s *shape) int64 {
	nd := &p.nodes[n]
	if !passesStatic(nd, s) {
		return 0
	}
	c, _ := tasksFit(nd, &s.req)
	return c
}

// primaryGroup is the group whose tasks are hardest to place: most GPUs,
// then most CPU, then the first.
func primaryGroup(j *model.Job) int {
	best := 0
	for gi := range j.Groups {
		g, b := &j.Groups[gi].Resources, &j.Groups[best].Resources
		if j.Groups[gi].Count > 0 && (j.Groups[best].Count == 0 || g.GPUs > b.GPUs || g.GPUs == b.GPUs && g.MilliCPU > b.MilliCPU) {
			best = gi
		}
	}
	return best
}

// topologyReason explains a job with a topology that did not fit, when
// the cluster as a whole has room for it, or returns false.
func (p *pass) topologyReason(j *model.Job) (model.Reason, bool) {
	if j.Topology == "" {
		return model.Reason{}, false
	}
	// Jobs of one group with the same shape, label and gang share it.
	if len(j.Groups) != 1 {
		return p.topologyReasonOf(j)
	}
	g := &j.Groups[0]
	key := topoReasonKey{p.shapeFor(g, "", j.Placement == model.PlacementSpread), j.Topology, j.GangSize()}
	if r, ok := p.topoReasons[key]; ok {
		return r, true
	}
	r, _ := p.topologyReasonOf(j)
	if p.topoReasons == nil {
		p.topoReasons = map[topoReasonKey]model.Reason{}
	}
	p.topoReasons[key] = r
	return r, true
}

type topoReasonKey struct {
	s     *shape
	label string
	gang  int
}

func (p *pass) topologyReasonOf(j *model.Job) (model.Reason, bool) {
	doms := p.domainsFor(j.Topology)
	g := &j.Groups[primaryGroup(j)]
	if len(doms) == 0 {
		return model.Reason{Code: model.ReasonTopology, Message: fmt.Sprintf(
			"gang must stay inside one %s, but no ready node has the label %s", j.Topology, j.Topology)}, true
	}
	fits := p.domainRoom(j, placeOpts{})
	best := fits[0]
	what := fmt.Sprintf("%d × %s", best.need, g.Resources)
	if g.Resources.GPUs > 0 {
		what = fmt.Sprintf("%d gpu", best.need*g.Resources.GPUs)
	}
	if best.spare >= 0 {
		return model.Reason{Code: model.ReasonTopology, Message: fmt.Sprintf(
			"gang needs %s in one %s; %s %s has room task by task but not for all groups at once", what, j.Topology, j.Topology, best.d.value)}, true
	}
	have := fmt.Sprintf("room for %s", plural(int(best.room), "task"))
	if g.Resources.GPUs > 0 {
		have = fmt.Sprintf("%d free", best.room*g.Resources.GPUs)
	}
	return model.Reason{Code: model.ReasonTopology, Message: fmt.Sprintf(
		"gang needs %s in one %s, best %s (%s) has %s", what, j.Topology, j.Topology, best.d.value, have)}, true
}
