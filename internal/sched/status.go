package sched

import (
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
	// above Effective; Lendable how much of its unused quota siblings may
	// still borrow; Room how much more one of its jobs may use now.
	Used, Borrowed, Lendable, Room int64
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
				Used: r.used, Borrowed: max(0, r.used-r.effN), Lendable: lendable, Room: max(room, 0),
			})
		}
		out = append(out, st)
	}
	return out
}
