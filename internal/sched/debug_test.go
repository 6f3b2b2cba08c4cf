package sched

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

func TestDebugRepro(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genDure(t)
		cfg := Config{ReservationDepth: rapid.SampledFrom([]int{0, 2, -1}).Draw(t, "depth")}
		p := Schedule(s, now, cfg)
		for _, q := range s.Queues {
			fmt.Printf("queue %s parent=%s quotas=%+v\n", q.Name, q.Parent, q.Quotas)
		}
		for _, n := range s.Nodes {
			fmt.Printf("node %s %s sched=%v labels=%v\n", n.Name, n.Capacity, n.Schedulable(), n.Labels)
		}
		for _, a := range s.Allocs {
			fmt.Printf("alloc %s on %s %s gpus=%v start=%v wall=%v status=%s q=%s prio=%d desired=%s\n", a.ID, a.Node, a.Resources, a.GPUIndices, a.StartedAt.Sub(now), a.Walltime, a.Status, a.Queue, a.Priority, a.Desired)
		}
		for _, j := range orderJobs(s.Pending, false) {
			fmt.Printf("job %d q=%s prio=%d submit=%v wall=%v groups=%+v\n", j.ID, j.Queue, j.Priority, j.SubmitTime.Sub(now), j.Walltime, j.Groups)
		}
		for _, pl := range p.Placements {
			fmt.Printf("place %d/%d on %s %s\n", pl.JobID, pl.TaskIndex, pl.Node, pl.Resources)
		}
		for _, r := range p.Reservations {
			fmt.Printf("reserve %d at %v end %v: %+v\n", r.JobID, r.Start.Sub(now), r.End.Sub(now), r.Placements)
		}
		for _, r := range p.Preemptions {
			fmt.Printf("preempt %+v\n", r)
		}
		for id, r := range p.Reasons {
			fmt.Printf("reason %d %+v\n", id, r)
		}
		checkPlanRules(t, s, now, cfg, p)
	})
}
