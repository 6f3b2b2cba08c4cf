package sched

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/durehq/dure/internal/model"
)

// naiveQuota is the quota arithmetic of queues.go written from the
// definitions, recomputed from scratch for every question: own usage per
// queue and key in, room out.
type naiveQuota struct {
	queues map[string]*model.Queue
	own    map[string]map[string]int64 // queue -> key -> usage of its own jobs
}

func newNaiveQuota(qs []*model.Queue) *naiveQuota {
	// Which of two same-named queues counts is the scheduler's rule.
	return &naiveQuota{queues: uniqueQueues(qs), own: map[string]map[string]int64{}}
}

func (n *naiveQuota) parent(name string) string {
	q := n.queues[name]
	if q == nil || q.Parent == name || n.queues[q.Parent] == nil {
		return ""
	}
	// a cycle makes the queue a root (as the scheduler does, by name order)
	for p := q.Parent; p != ""; {
		if p == name {
			return ""
		}
		pq := n.queues[p]
		if pq == nil || pq.Parent == p {
			break
		}
		p = pq.Parent
	}
	return q.Parent
}

func (n *naiveQuota) children(name string) []string {
	var out []string
	for c := range n.queues {
		if c != name && n.parent(c) == name {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

func (n *naiveQuota) governs(name, k string) bool {
	if q := n.queues[name]; q != nil && q.QuotaFor(k) != nil {
		return true
	}
	for _, c := range n.children(name) {
		if n.governs(c, k) {
			return true
		}
	}
	return false
}

func (n *naiveQuota) effN(name, k string) int64 {
	var e int64
	if q := n.queues[name]; q != nil {
		if qu := q.QuotaFor(k); qu != nil {
			e = max(qu.Nominal, 0)
		}
	}
	for _, c := range n.children(name) {
		e += n.effN(c, k)
	}
	return e
}

func (n *naiveQuota) used(name, k string) int64 {
	u := n.own[name][k]
	for _, c := range n.children(name) {
		u += n.used(c, k)
	}
	return u
}

func (n *naiveQuota) prot(name, k string) int64 {
	q := n.queues[name]
	if q == nil || q.QuotaFor(k) == nil || q.QuotaFor(k).LendingLimit == nil {
		return 0
	}
	return max(0, max(0, n.effN(name, k)-n.used(name, k))-max(*q.QuotaFor(k).LendingLimit, 0))
}

func (n *naiveQuota) borrowRoom(name, k string) int64 {
	q := n.queues[name]
	if q == nil || q.QuotaFor(k) == nil || q.QuotaFor(k).BorrowingLimit == nil {
		return unlimited
	}
	return n.effN(name, k) + max(*q.QuotaFor(k).BorrowingLimit, 0) - n.used(name, k)
}

// room is how much more of k a job in queue name may use.
func (n *naiveQuota) room(name, k string) int64 {
	var sub func(q string) int64
	sub = func(q string) int64 {
		p := n.parent(q)
		if p == "" {
			if !n.governs(q, k) {
				return unlimited
			}
			return min(n.effN(q, k)-n.used(q, k), n.borrowRoom(q, k))
		}
		if !n.governs(p, k) {
			return unlimited
		}
		h := sub(p)
		for _, s := range n.children(p) {
			if s != q {
				h -= n.prot(s, k)
			}
		}
		return min(h, n.borrowRoom(q, k))
	}
	h := sub(name)
	for _, c := range n.children(name) {
		h -= n.prot(c, k)
	}
	return h
}

// keysOf is what one task holds on a node in quota keys (every key; the
// ungoverned ones never limit).
func keysOf(r model.Resources, node *model.Node) map[string]int64 {
	out := map[string]int64{"cpu": r.MilliCPU, "memory": r.MemoryBytes, "gpu": r.GPUs, "scratch": r.ScratchBytes}
	for k, v := range r.Custom {
		out[k] += v
	}
	if node != nil {
		f := node.Labels["gpu.model"]
		if f == "" && len(node.GPUs) > 0 {
			f = node.GPUs[0].Model
		}
		if f != "" {
			out["gpu/"+f] += r.GPUs
		}
		for _, res := range []string{"cpu", "memory", "scratch"} {
			if f := node.Labels[res+".model"]; f != "" {
				out[res+"/"+f] += map[string]int64{"cpu": r.MilliCPU, "memory": r.MemoryBytes, "scratch": r.ScratchBytes}[res]
			}
		}
	}
	return out
}

func (n *naiveQuota) add(queue string, keys map[string]int64, sign int64) {
	if queue == "" {
		queue = model.DefaultQueue
	}
	if n.own[queue] == nil {
		n.own[queue] = map[string]int64{}
	}
	for k, v := range keys {
		n.own[queue][k] += sign * v
	}
}

// checkQuotaRules (PolicyDure): each job of the plan, taken in plan order,
// fits the room its queue had (never above nominal plus borrowing limit,
// never into what a sibling does not lend), and GPU tasks land on the
// flavors their queue's quotas list.
func checkQuotaRules(t tb, s *Snapshot, now time.Time, cfg Config, p *Plan) {
	t.Helper()
	if cfg.policy() != PolicyDure || cfg.firstFit {
		return
	}
	nodes := map[string]*model.Node{}
	for _, n := range s.Nodes {
		nodes[n.Name] = n
	}
	jobs := map[model.JobID]*model.Job{}
	for _, j := range s.Pending {
		jobs[j.ID] = j
	}
	nq := newNaiveQuota(s.Queues)
	for _, a := range s.Allocs {
		if !a.Status.Terminal() && a.Desired != model.DesiredStop {
			nq.add(a.Queue, keysOf(a.Resources, nodes[a.Node]), 1)
		}
	}
	for i := 0; i < len(p.Placements); {
		id := p.Placements[i].JobID
		j := jobs[id]
		need := map[string]int64{}
		k := i
		for ; k < len(p.Placements) && p.Placements[k].JobID == id; k++ {
			pl := p.Placements[k]
			for key, v := range keysOf(pl.Resources, nodes[pl.Node]) {
				need[key] += v
			}
			if flavors := naiveFlavors(nq, j.Queue); len(flavors) > 0 && pl.Resources.GPUs > 0 {
				f := nodes[pl.Node].Labels["gpu.model"]
				if f == "" && len(nodes[pl.Node].GPUs) > 0 {
					f = nodes[pl.Node].GPUs[0].Model
				}
				if !slices.Contains(flavors, f) {
					t.Errorf("job %d: GPU task on %s (flavor %q), but queue %s allows only %v", id, pl.Node, f, j.Queue, flavors)
				}
			}
		}
		queue := j.Queue
		if queue == "" {
			queue = model.DefaultQueue
		}
		for key, v := range need {
			if v > 0 {
				if room := nq.room(queue, key); v > room {
					t.Errorf("job %d in queue %s takes %d of %s, but the queue had room for %d", id, queue, v, key, room)
				}
			}
		}
		nq.add(queue, need, 1)
		i = k
	}
}

func naiveFlavors(nq *naiveQuota, queue string) []string {
	if queue == "" {
		queue = model.DefaultQueue
	}
	var out []string
	for q := queue; q != ""; q = nq.parent(q) {
		if nq.queues[q] == nil {
			break
		}
		for _, qu := range nq.queues[q].Quotas {
			if f, ok := strings.CutPrefix(qu.Resource, "gpu/"); ok && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// checkPreemptionRules (PolicyDure): a preemptor is pending, is not placed,
// says it is preempting; its victims are running, stopped whole, and each
// is of lower priority in its queue or in a borrowing queue of its tree
// while its own queue stays within nominal; with the victims (and jobs
// already stopping) gone it fits (naive placement, naive quota); and with
// any one victim kept running it would not (minimal victims).
func checkPreemptionRules(t tb, s *Snapshot, now time.Time, cfg Config, p *Plan) {
	t.Helper()
	if len(p.Preemptions) == 0 {
		return
	}
	if cfg.policy() != PolicyDure {
		t.Fatalf("policy %s preempted: %v", cfg.policy(), p.Preemptions)
	}
	jobs := map[model.JobID]*model.Job{}
	for _, j := range s.Pending {
		jobs[j.ID] = j
	}
	placed := map[model.JobID]bool{}
	for _, pl := range p.Placements {
		placed[pl.JobID] = true
	}
	live := map[model.JobID][]*model.Allocation{}
	for _, a := range s.Allocs {
		if !a.Status.Terminal() {
			live[a.JobID] = append(live[a.JobID], a)
		}
	}
	byPreemptor := map[model.JobID][]Preemption{}
	var order []model.JobID
	for _, pr := range p.Preemptions {
		if _, ok := byPreemptor[pr.Preemptor]; !ok {
			order = append(order, pr.Preemptor)
		}
		byPreemptor[pr.Preemptor] = append(byPreemptor[pr.Preemptor], pr)
	}
	for _, pid := range order {
		j := jobs[pid]
		switch {
		case j == nil:
			t.Fatalf("preemptor %d is not pending", pid)
		case placed[pid]:
			t.Errorf("preemptor %d is placed in the same plan", pid)
		case p.Reasons[pid].Code != model.ReasonPreempting:
			t.Errorf("preemptor %d: reason %+v, want %s", pid, p.Reasons[pid], model.ReasonPreempting)
		}
		victims := map[model.JobID]bool{}
		for _, pr := range byPreemptor[pid] {
			victims[pr.JobID] = true
			var ids []string
			for _, a := range live[pr.JobID] {
				ids = append(ids, a.ID)
			}
			sort.Strings(ids)
			if len(ids) == 0 || fmt.Sprint(ids) != fmt.Sprint(pr.AllocIDs) {
				t.Errorf("victim %d: stops allocations %v, want all its live ones %v", pr.JobID, pr.AllocIDs, ids)
			}
			if pr.Reason.Code != model.ReasonPreempted || pr.Reason.Message == "" {
				t.Errorf("victim %d: reason %+v", pr.JobID, pr.Reason)
			}
			for _, a := range live[pr.JobID] {
				if a.Desired == model.DesiredStop {
					t.Errorf("victim %d is already stopping", pr.JobID)
				}
			}
		}
		nq := newNaiveQuota(s.Queues)
		groups := 0
		for _, g := range j.Groups {
			if g.Count > 0 {
				groups++
			}
		}
		if len(naiveFlavors(nq, j.Queue)) > 0 || j.Topology != "" || j.MinTasks > 0 || groups > 1 {
			// The naive placer knows nothing of flavors, topology or gang
			// minimums, and greedy first fit is exact only for identical
			// tasks (one group).
			continue
		}
		for v := range victims {
			checkVictimEligible(t, s, p, j, v, live[v])
		}
		if waitingBehind(s, j) {
			// j goes first with the other preemptors, in an order the
			// naive check does not follow: room stopping for those not
			// yet served is held from it.
			continue
		}
		if !preemptorFits(s, now, cfg, p, j, victims, nil, true) {
			t.Errorf("preemptor %d does not fit even with victims %v gone", pid, keysSorted(victims))
		}
		for v := range victims {
			if preemptorFits(s, now, cfg, p, j, victims, map[model.JobID]bool{v: true}, false) {
				t.Errorf("preemptor %d fits without preempting victim %d: not minimal (victims %v)", pid, v, keysSorted(victims))
			}
		}
	}
}

// waitingBehind: j was preempted for (a requeued job names it) and some
// allocation is being stopped for another pending job.
func waitingBehind(s *Snapshot, j *model.Job) bool {
	pending := map[model.JobID]bool{}
	mine := false
	for _, x := range s.Pending {
		pending[x.ID] = true
		mine = mine || x.PreemptedBy == j.ID && x.ID != j.ID
	}
	for _, a := range s.Allocs {
		if a.Desired == model.DesiredStop && a.PreemptedBy != j.ID && pending[a.PreemptedBy] {
			return mine
		}
	}
	return false
}

func keysSorted(m map[model.JobID]bool) []model.JobID {
	var out []model.JobID
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// preemptorFits: after the grace period, does j fit the nodes (naive
// first fit) and its queue's quota (naive room)? Gone by then: every
// allocation already stopping, everything expected to end by then, and
// j's victims less `keep`.
//
// final=true checks the state the whole plan leads to: every victim of
// every preemptor gone, the plan's placements running and every other
// preemptor's planned start held. Each later decision honoured j's
// reservation, so j must fit there. final=false checks the state when j
// chose its victims, as far as the plan shows it: victims of preemptors
// decided before j gone and their starts held, and the plan's placements
// running (some were placed later, which only takes room away). If j fits
// there with a victim kept, that victim was not needed.
func preemptorFits(s *Snapshot, now time.Time, cfg Config, p *Plan, j *model.Job, victims, keep map[model.JobID]bool, final bool) bool {
	grace := cfg.PreemptGrace
	if grace <= 0 {
		grace = time.Minute
	}
	at := now.Add(grace)
	est := naiveEstimates(s, now, cfg)
	// Preemptors whose starts are held, and whose victims are gone.
	held := map[model.JobID]bool{}
	for _, r := range p.Reservations {
		if r.JobID == j.ID {
			if !final {
				break
			}
			continue
		}
		if p.Reasons[r.JobID].Code == model.ReasonPreempting {
			held[r.JobID] = true
		}
	}
	others := map[model.JobID]bool{}
	for _, pr := range p.Preemptions {
		if final || held[pr.Preemptor] {
			others[pr.JobID] = true
		}
	}
	victim := func(id model.JobID) bool { return others[id] || victims[id] && !keep[id] }
	var allocs []*model.Allocation
	for _, a := range s.Allocs {
		if !a.Status.Terminal() && a.Desired != model.DesiredStop && !victim(a.JobID) && est.allocEnd(a).After(at) {
			allocs = append(allocs, a)
		}
	}
	jobs := map[model.JobID]*model.Job{}
	for _, x := range s.Pending {
		jobs[x.ID] = x
	}
	// The plan's placements run (those expected to end by then are gone);
	// the held preemptors' planned starts take their room.
	var ps []Placement
	for _, pl := range p.Placements {
		if now.Add(est.runFor(jobs[pl.JobID])).After(at) {
			ps = append(ps, pl)
		}
	}
	for _, r := range p.Reservations {
		if held[r.JobID] {
			ps = append(ps, r.Placements...)
		}
	}
	for i, pl := range ps {
		a := &model.Allocation{ID: fmt.Sprintf("plan%d", i), JobID: pl.JobID, Node: pl.Node, Resources: pl.Resources, GPUIndices: pl.GPUIndices, Status: model.AllocAssigned}
		allocs = append(allocs, a)
	}
	one := j.Copy()
	one.Priority = 0
	ref := naiveSchedule(&Snapshot{Nodes: s.Nodes, Allocs: allocs, Pending: []*model.Job{one}})
	if len(ref.Placements) == 0 {
		return false
	}
	nodes := map[string]*model.Node{}
	for _, n := range s.Nodes {
		nodes[n.Name] = n
	}
	// Quota: jobs being stopped hold none, nor do the victims counted gone
	// above (in the decision-time state, later preemptors' victims still
	// count, until they stop); the plan's placements and the held
	// preemptors count from now.
	nq := newNaiveQuota(s.Queues)
	for _, a := range s.Allocs {
		if !a.Status.Terminal() && a.Desired != model.DesiredStop && !victim(a.JobID) {
			nq.add(a.Queue, keysOf(a.Resources, nodes[a.Node]), 1)
		}
	}
	for _, pl := range p.Placements {
		nq.add(jobs[pl.JobID].Queue, keysOf(pl.Resources, nodes[pl.Node]), 1)
	}
	for _, r := range p.Reservations {
		if held[r.JobID] {
			for _, pl := range r.Placements {
				nq.add(jobs[pl.JobID].Queue, keysOf(pl.Resources, nodes[pl.Node]), 1)
			}
		}
	}
	need := map[string]int64{}
	for _, pl := range ref.Placements {
		for k, v := range keysOf(pl.Resources, nodes[pl.Node]) {
			need[k] += v
		}
	}
	queue := j.Queue
	if queue == "" {
		queue = model.DefaultQueue
	}
	for k, v := range need {
		if v > 0 && v > nq.room(queue, k) {
			return false
		}
	}
	return true
}

// checkVictimEligible: the victim is in the preemptor's queue with a lower
// priority, or in a queue of the same tree that borrows (after the plan,
// other preemptors counted) a
// resource the preemptor needs while the preemptor's queue is within its
// nominal quota (before the plan).
func checkVictimEligible(t tb, s *Snapshot, p *Plan, j *model.Job, v model.JobID, allocs []*model.Allocation) {
	t.Helper()
	if len(allocs) == 0 {
		return
	}
	qname := func(q string) string {
		if q == "" {
			return model.DefaultQueue
		}
		return q
	}
	jq, vq := qname(j.Queue), qname(allocs[0].Queue)
	if jq == vq {
		if allocs[0].Priority >= j.Priority {
			t.Errorf("victim %d (priority %d) is not of lower priority than preemptor %d (%d) in queue %s", v, allocs[0].Priority, j.ID, j.Priority, jq)
		}
		return
	}
	nodes := map[string]*model.Node{}
	for _, n := range s.Nodes {
		nodes[n.Name] = n
	}
	before, after := newNaiveQuota(s.Queues), newNaiveQuota(s.Queues)
	for _, a := range s.Allocs {
		if !a.Status.Terminal() && a.Desired != model.DesiredStop {
			before.add(a.Queue, keysOf(a.Resources, nodes[a.Node]), 1)
			after.add(a.Queue, keysOf(a.Resources, nodes[a.Node]), 1)
		}
	}
	jobs := map[model.JobID]*model.Job{}
	for _, x := range s.Pending {
		jobs[x.ID] = x
	}
	for _, pl := range p.Placements {
		after.add(jobs[pl.JobID].Queue, keysOf(pl.Resources, nodes[pl.Node]), 1)
	}
	// Preemptors count against their queue's quota from now.
	for _, r := range p.Reservations {
		if p.Reasons[r.JobID].Code == model.ReasonPreempting && r.JobID != j.ID {
			for _, pl := range r.Placements {
				after.add(jobs[pl.JobID].Queue, keysOf(pl.Resources, nodes[pl.Node]), 1)
			}
		}
	}
	root := func(q string) string {
		for before.parent(q) != "" {
			q = before.parent(q)
		}
		return q
	}
	if root(jq) != root(vq) {
		t.Errorf("victim %d in queue %s is outside the tree of preemptor %d's queue %s", v, vq, j.ID, jq)
	}
	need := map[string]int64{}
	for _, g := range j.Groups {
		for k, x := range keysOf(g.Resources, nil) {
			need[k] += x * int64(min(g.Count, j.GangSize()))
		}
	}
	borrowed := false
	for k, x := range need {
		if x <= 0 || !before.governs(root(jq), k) {
			continue
		}
		if before.governs(jq, k) && before.used(jq, k)+x > before.effN(jq, k) {
			t.Errorf("preemptor %d reclaims for queue %s, which would exceed its nominal %s (%d+%d > %d)", j.ID, jq, k, before.used(jq, k), x, before.effN(jq, k))
		}
		var vuse int64
		for _, a := range allocs {
			vuse += keysOf(a.Resources, nodes[a.Node])[k]
		}
		if vuse > 0 && (!after.governs(vq, k) || after.used(vq, k) > after.effN(vq, k)) {
			borrowed = true
		}
	}
	if !borrowed {
		t.Errorf("victim %d in queue %s borrows nothing preemptor %d needs", v, vq, j.ID)
	}
}
