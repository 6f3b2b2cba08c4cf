package sched

import (
	"math/bits"
	"sort"
	"time"
)

// QueueStatus is what `dure queues` shows for one queue.
type QueueStatus struct {
	Name   string
	Parent string
	Weight float64
	// Share is the queue's weighted dominant share (fairshare.go): 0 idle;
	// about 1/weight when it has used the whole cluster for a while.
	Share float64
	// Resources lists, per quota key the queue's subtree governs, sorted by
	// key.
	Resources []QueueResource
}

// QueueResource is one quota key of a queue.
type QueueResource struct {
	Resource string
	// Nominal is the queue's own quota; Effective adds its children's.
	Nominal, Effective int64
	// BorrowingLimit and LendingLimit are -1 when unset.
	BorrowingLimit, LendingLimit int64
	// Used is what running jobs of the subtree hold; Borrowed what of it is
	// above Effective; Lendable how much of its quota its siblings may use
	// now (its unused quota, up to its lending limit, counting what they
	// already use of it); Lent how much of it they use now (lentShares);
	// Room how much more one of its jobs may use now.
	Used, Borrowed, Lendable, Lent, Room int64
}

// Queues reports quota usage and fair share per queue, by name: the same
// arithmetic Schedule uses (README.md), from the same snapshot. Jobs being
// stopped count for nothing, as in Schedule.
func Queues(s *Snapshot, now time.Time, cfg Config) []QueueStatus {
	pl := newPlanner(s, now, cfg, false, false)
	d := newDure(pl)
	d.fair.load(s, d.tree, true, pl.history, d.allocQueue) // every queue's share
	names := make([]string, 0, len(d.tree.byName))
	for n := range d.tree.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	lent := map[lentKey]int64{}
	for _, name := range names {
		if n := d.tree.byName[name]; len(n.children) > 0 {
			for k := range n.res {
				lentShares(n, k, lent)
			}
		}
	}
	out := make([]QueueStatus, 0, len(names))
	for _, name := range names {
		n := d.tree.byName[name]
		st := QueueStatus{Name: name, Weight: n.weight, Share: d.fair.queueShare(n)}
		if n.parent != nil {
			st.Parent = n.parent.name
		}
		keys := make([]string, 0, len(n.res))
		for k := range n.res {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			r := n.res[k]
			room := d.tree.room(n, d.tree.keyIdx[k])
			lendable := max(0, r.effN-r.used)
			if r.lend >= 0 {
				lendable = min(lendable, r.lend)
			}
			st.Resources = append(st.Resources, QueueResource{
				Resource: k, Nominal: r.nominal, Effective: r.effN, BorrowingLimit: r.borrow, LendingLimit: r.lend,
				Used: r.used, Borrowed: max(0, r.used-r.effN), Lendable: lendable, Lent: lent[lentKey{n, k}], Room: max(room, 0),
			})
		}
		out = append(out, st)
	}
	return out
}

type lentKey struct {
	n *qnode
	k string
}

// lentShares works out, for key k of the cohort under p, how much of each
// child's quota the other children use now, into lent. Quota cannot be
// traced unit by unit, so borrowed usage is attributed by a rule:
//
//   - borrowed = Σ max(0, used(c) − effN(c)) over p's children, where p's
//     own jobs and the children with no quota for k count as one more
//     child of effective quota nominal(p);
//   - each child c that governs k can lend lendable(c) = its unused
//     quota, up to its lending limit; p's own unused nominal is lendable
//     too (without a limit);
//   - min(borrowed, Σ lendable) is lent (the rest comes from above p),
//     split in proportion to lendable: lent(c) = lent × lendable(c) / Σ
//     lendable, rounded down, the units left over going to the largest
//     remainders (ties: children by name, p's own part last).
//
// Only what siblings use counts: when p itself borrows from its own
// siblings, that shows as lent on them, not on p's children.
func lentShares(p *qnode, k string, lent map[lentKey]int64) {
	pr := p.res[k]
	type lender struct {
		n    *qnode // nil: p's own part
		can  int64
		got  int64
		rest uint64
	}
	var lenders []lender
	var borrowed, sum int64
	resid := pr.used
	children := append([]*qnode(nil), p.children...)
	sort.Slice(children, func(a, b int) bool { return children[a].name < children[b].name })
	for _, c := range children {
		cr := c.res[k]
		if cr == nil {
			continue
		}
		resid -= cr.used
		borrowed += max(0, cr.used-cr.effN)
		can := max(0, cr.effN-cr.used)
		if cr.lend >= 0 {
			can = min(can, cr.lend)
		}
		if can > 0 {
			lenders = append(lenders, lender{n: c, can: can})
			sum += can
		}
	}
	borrowed += max(0, resid-pr.nominal)
	if own := max(0, pr.nominal-resid); own > 0 {
		lenders = append(lenders, lender{can: own})
		sum += own
	}
	total := min(borrowed, sum)
	if total <= 0 {
		return
	}
	left := total
	for i := range lenders {
		l := &lenders[i]
		// total × can / sum without overflow: total ≤ sum, so the high
		// word of the product is below sum.
		hi, lo := bits.Mul64(uint64(total), uint64(l.can))
		q, r := bits.Div64(hi, lo, uint64(sum))
		l.got, l.rest = int64(q), r
		left -= l.got
	}
	order := make([]int, len(lenders))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return lenders[order[a]].rest > lenders[order[b]].rest })
	for _, i := range order[:left] {
		lenders[i].got++
	}
	for _, l := range lenders {
		if l.n != nil && l.got > 0 {
			lent[lentKey{l.n, k}] = l.got
		}
	}
}
