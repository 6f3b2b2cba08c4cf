package sched

import (
	"fmt"
	"sort"
	"time"

	"github.com/durehq/dure/internal/model"
)

// checkPlanRules asserts the policy-level rules of a plan with deliberately
// naive arithmetic (no timeline, no indexes): every reservation fits on its
// nodes at every instant of its window, next to everything expected to hold
// resources then (live allocations until they end, the plan's placements
// for their run time, and the reservations made before it), which is what
// "backfill never delays a reservation" means; and the rules of quotas and
// preemption (rules_quota_test.go).
func checkPlanRules(t tb, s *Snapshot, now time.Time, cfg Config, p *Plan) {
	t.Helper()
	checkReservations(t, s, now, cfg, p)
	checkQuotaRules(t, s, now, cfg, p)
	checkPreemptionRules(t, s, now, cfg, p)
}

type naiveHold struct {
	node     string
	from, to time.Time
	r        model.Resources
	who      string
}

func checkReservations(t tb, s *Snapshot, now time.Time, cfg Config, p *Plan) {
	t.Helper()
	if len(p.Reservations) == 0 {
		return
	}
	nodes := map[string]*model.Node{}
	for _, n := range s.Nodes {
		if n.Schedulable() {
			nodes[n.Name] = n
		}
	}
	jobs := map[model.JobID]*model.Job{}
	for _, j := range s.Pending {
		jobs[j.ID] = j
	}
	est := naiveEstimates(s, now, cfg)
	victim := map[model.JobID]bool{}
	for _, pr := range p.Preemptions {
		victim[pr.JobID] = true
	}
	grace := cfg.PreemptGrace
	if grace <= 0 {
		grace = time.Minute
	}
	var holds []naiveHold
	for _, a := range s.Allocs {
		if a.Status.Terminal() || nodes[a.Node] == nil {
			continue
		}
		end := est.allocEnd(a)
		if victim[a.JobID] || a.Desired == model.DesiredStop {
			end = now.Add(grace) // stopped: gone after the grace period
		}
		holds = append(holds, naiveHold{a.Node, now, end, a.Resources, "alloc " + a.ID})
	}
	for _, pl := range p.Placements {
		j := jobs[pl.JobID]
		holds = append(holds, naiveHold{pl.Node, now, now.Add(est.runFor(j)), pl.Resources, fmt.Sprintf("job %d (started now)", pl.JobID)})
	}
	for _, r := range p.Reservations {
		j := jobs[r.JobID]
		if j == nil {
			t.Fatalf("reservation for job %d, which is not pending", r.JobID)
		}
		if !r.Start.After(now) {
			t.Errorf("job %d: reservation starts at %v, not after now %v", r.JobID, r.Start, now)
		}
		if p.Reasons[r.JobID].Code == model.ReasonPreempting && !r.Start.Equal(now.Add(grace)) {
			t.Errorf("preemptor %d: planned start %v, want now + grace %v", r.JobID, r.Start.Sub(now), grace)
		}
		if got, want := r.End.Sub(r.Start), est.runFor(j); got != want {
			t.Errorf("job %d: reservation lasts %v, want the job's expected run time %v", r.JobID, got, want)
		}
		if len(r.Placements) < j.GangSize() {
			t.Errorf("job %d: reservation places %d tasks, gang needs %d", r.JobID, len(r.Placements), j.GangSize())
		}
		var mine []naiveHold
		names := map[string]bool{}
		for _, pl := range r.Placements {
			if nodes[pl.Node] == nil {
				t.Errorf("job %d: reserved on unschedulable node %s", r.JobID, pl.Node)
				continue
			}
			mine = append(mine, naiveHold{pl.Node, r.Start, r.End, pl.Resources, fmt.Sprintf("job %d (reserved)", r.JobID)})
			names[pl.Node] = true
		}
		var listed []string
		for n := range names {
			listed = append(listed, n)
		}
		sort.Strings(listed)
		if fmt.Sprint(listed) != fmt.Sprint(r.Nodes) {
			t.Errorf("job %d: reservation lists nodes %v, its placements use %v", r.JobID, r.Nodes, listed)
		}
		// Check every instant of the window at which something starts.
		instants := []time.Time{r.Start}
		for _, h := range holds {
			if h.from.After(r.Start) && h.from.Before(r.End) {
				instants = append(instants, h.from)
			}
		}
		all := append(append([]naiveHold(nil), holds...), mine...)
		for _, at := range instants {
			used := map[string]model.Resources{}
			var who = map[string][]string{}
			for _, h := range all {
				if !names[h.node] || at.Before(h.from) || !at.Before(h.to) {
					continue
				}
				used[h.node] = used[h.node].Add(h.r)
				who[h.node] = append(who[h.node], h.who)
			}
			for n, u := range used {
				capacity := nodes[n].Capacity.Copy()
				capacity.GPUs = min(capacity.GPUs, int64(len(nodes[n].GPUs)))
				if dim := capacity.Shortfall(u); dim != "" {
					t.Errorf("job %d: at %v node %s is overcommitted in %s by its reservation: %s of %s held by %v",
						r.JobID, at.Sub(now), n, dim, u, capacity, who[n])
				}
			}
		}
		holds = append(holds, mine...)
	}
}

// naiveEstimate is how long the policy assumes things run, recomputed the
// obvious way for the textbook rule (walltime, else the queue's default,
// else the configured default). Runtime predictions are the policy itself,
// so PolicyDure's come from the package's estimator.
type naiveEstimate struct {
	allocEnd func(a *model.Allocation) time.Time
	runFor   func(j *model.Job) time.Duration
}

func naiveEstimates(s *Snapshot, now time.Time, cfg Config) naiveEstimate {
	queues := uniqueQueues(s.Queues)
	if cfg.policy() == PolicyDure && !cfg.NoPredictions {
		e := newEstimator(s, now, cfg, queues, true, newHistoryOrder(s.History))
		return naiveEstimate{
			allocEnd: func(a *model.Allocation) time.Time { return time.Unix(0, e.allocEnd(a)) },
			runFor:   func(j *model.Job) time.Duration { return time.Duration(e.runFor(j)) },
		}
	}
	def := func(queue string) time.Duration {
		if queue == "" {
			queue = model.DefaultQueue
		}
		if q := queues[queue]; q != nil && q.DefaultWalltime > 0 {
			return q.DefaultWalltime
		}
		if cfg.DefaultWalltime > 0 {
			return cfg.DefaultWalltime
		}
		return time.Hour
	}
	return naiveEstimate{
		allocEnd: func(a *model.Allocation) time.Time {
			if a.Desired == model.DesiredStop {
				if cfg.PreemptGrace > 0 {
					return now.Add(cfg.PreemptGrace)
				}
				return now.Add(time.Minute)
			}
			start := a.StartedAt
			if start.IsZero() {
				start = now
			}
			w := a.Walltime
			if w <= 0 {
				w = def(a.Queue)
			}
			end := start.Add(w)
			if end.Before(now.Add(time.Minute)) {
				end = now.Add(time.Minute)
			}
			return end
		},
		runFor: func(j *model.Job) time.Duration {
			if j.Walltime > 0 {
				return j.Walltime
			}
			return def(j.Queue)
		},
	}
}
