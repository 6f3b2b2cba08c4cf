package sched

import (
	"fmt"
	"strings"
	"time"

	"github.com/durehq/dure/internal/model"
)

// dump renders a snapshot and a plan for failure messages of the property
// tests (rapid shows logs only for the failing, shrunk case).
func dump(s *Snapshot, now time.Time, p *Plan) string {
	var b strings.Builder
	for _, q := range s.Queues {
		fmt.Fprintf(&b, "queue %s parent=%q weight=%v", q.Name, q.Parent, q.Weight)
		for _, qu := range q.Quotas {
			fmt.Fprintf(&b, " %s:%d", qu.Resource, qu.Nominal)
			if qu.BorrowingLimit != nil {
				fmt.Fprintf(&b, ":borrow=%d", *qu.BorrowingLimit)
			}
			if qu.LendingLimit != nil {
				fmt.Fprintf(&b, ":lend=%d", *qu.LendingLimit)
			}
		}
		b.WriteString("\n")
	}
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "node %s %s gpus=%d schedulable=%v labels=%v\n", n.Name, n.Capacity, len(n.GPUs), n.Schedulable(), n.Labels)
	}
	for _, a := range s.Allocs {
		fmt.Fprintf(&b, "alloc %s on %s %s gpus=%v started=%v wall=%v %s queue=%s prio=%d desired=%s\n",
			a.ID, a.Node, a.Resources, a.GPUIndices, a.StartedAt.Sub(now), a.Walltime, a.Status, a.Queue, a.Priority, a.Desired)
	}
	for _, j := range s.Pending {
		if j.TaskCount() == 0 {
			continue
		}
		fmt.Fprintf(&b, "job %d queue=%s prio=%d owner=%s submit=%v wall=%v", j.ID, j.Queue, j.Priority, j.Owner, j.SubmitTime.Sub(now), j.Walltime)
		for _, g := range j.Groups {
			fmt.Fprintf(&b, " [%d × %s %v]", g.Count, g.Resources, g.Constraints)
		}
		b.WriteString("\n")
	}
	if p == nil {
		return b.String()
	}
	for _, pl := range p.Placements {
		fmt.Fprintf(&b, "place %d/%d on %s %s gpus=%v\n", pl.JobID, pl.TaskIndex, pl.Node, pl.Resources, pl.GPUIndices)
	}
	for _, r := range p.Reservations {
		fmt.Fprintf(&b, "reserve %d at %v until %v on %v\n", r.JobID, r.Start.Sub(now), r.End.Sub(now), r.Nodes)
	}
	for _, r := range p.Preemptions {
		fmt.Fprintf(&b, "preempt %d for %d: %s\n", r.JobID, r.Preemptor, r.Reason.Message)
	}
	for id, r := range p.Reasons {
		if r.Code != model.ReasonNoFit {
			fmt.Fprintf(&b, "reason %d %s: %s\n", id, r.Code, r.Message)
		}
	}
	return b.String()
}
