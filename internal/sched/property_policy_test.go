package sched

import (
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// genTimed draws a snapshot (genSnapshot) and gives it time: walltimes on
// some jobs and allocations, allocations started in the past (some overdue,
// some not started), owners, and a clock.
func genTimed(t *rapid.T) (*Snapshot, time.Time) {
	s := genSnapshot(t)
	now := testkit.Epoch.Add(time.Duration(rapid.IntRange(0, 120).Draw(t, "now")) * time.Minute)
	walls := []time.Duration{0, 10 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour}
	for _, a := range s.Allocs {
		a.Walltime = rapid.SampledFrom(walls).Draw(t, "awall")
		switch rapid.IntRange(0, 3).Draw(t, "astart") {
		case 0:
			a.StartedAt = time.Time{}
		default:
			a.StartedAt = now.Add(-time.Duration(rapid.IntRange(0, 200).Draw(t, "ago")) * time.Minute)
		}
		a.Owner = rapid.SampledFrom([]string{"ann", "bob"}).Draw(t, "aowner")
	}
	for _, j := range s.Pending {
		j.Walltime = rapid.SampledFrom(walls).Draw(t, "wall")
		j.Owner = rapid.SampledFrom([]string{"ann", "bob", "cy"}).Draw(t, "owner")
	}
	return s, now
}

// TestTextbookPoliciesKeepTheRules: FIFO, EASY and conservative plans never
// overcommit, place gangs whole, explain every job left, and no job started
// now delays a reservation (checked with naive arithmetic).
func TestTextbookPoliciesKeepTheRules(t *testing.T) {
	for _, pol := range []Policy{PolicyFIFO, PolicyEASY, PolicyConservative} {
		t.Run(string(pol), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				s, now := genTimed(t)
				cfg := Config{Policy: pol}
				p := Schedule(s, now, cfg)
				t.Log(dump(s, now, p))
				checkInvariants(t, s, p)
				checkPlanRules(t, s, now, cfg, p)
				switch pol {
				case PolicyFIFO:
					if len(p.Reservations) != 0 {
						t.Fatalf("fifo made reservations: %v", p.Reservations)
					}
				case PolicyEASY:
					if len(p.Reservations) > 1 {
						t.Fatalf("easy made %d reservations, want at most 1", len(p.Reservations))
					}
				}
			})
		})
	}
}

// TestFIFOIsStrictlyInOrder: under FIFO, no job starts after one submitted
// before it was left waiting (unless that one can never fit).
func TestFIFOIsStrictlyInOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genTimed(t)
		p := Schedule(s, now, Config{Policy: PolicyFIFO})
		placed := map[model.JobID]bool{}
		for _, pl := range p.Placements {
			placed[pl.JobID] = true
		}
		order := orderJobs(s.Pending, false)
		blocked := model.JobID(0)
		for _, j := range order {
			r, waiting := p.Reasons[j.ID]
			if placed[j.ID] && blocked != 0 {
				t.Fatalf("job %d started though job %d, earlier, waits", j.ID, blocked)
			}
			if waiting && blocked == 0 && r.Code != model.ReasonNoFit && r.Code != model.ReasonConstraints && r.Code != model.ReasonNoNodes {
				blocked = j.ID
			}
		}
	})
}

// genDure draws a timed snapshot (genTimed) with a queue tree: a cohort of
// two or three queues with GPU and CPU quotas, borrowing and lending limits
// drawn at random, jobs and allocations spread over the queues with
// priorities, and some allocations already being stopped.
func genDure(t *rapid.T) (*Snapshot, time.Time) {
	s, now := genTimed(t)
	cohort := &model.Queue{Name: "cohort"}
	s.Queues = append(s.Queues, cohort, &model.Queue{Name: model.DefaultQueue})
	names := []string{"a", "b", "c"}[:rapid.IntRange(2, 3).Draw(t, "queues")]
	limit := func(label string) *int64 {
		if rapid.Bool().Draw(t, label+"?") {
			v := rapid.Int64Range(0, 3).Draw(t, label)
			return &v
		}
		return nil
	}
	for _, n := range names {
		q := &model.Queue{Name: n, Parent: "cohort", Weight: float64(rapid.IntRange(0, 3).Draw(t, "weight"))}
		if rapid.Bool().Draw(t, "gpuquota") {
			q.Quotas = append(q.Quotas, model.Quota{Resource: "gpu", Nominal: rapid.Int64Range(0, 4).Draw(t, "gpunom"),
				BorrowingLimit: limit("gpuborrow"), LendingLimit: limit("gpulend")})
		}
		if rapid.Bool().Draw(t, "cpuquota") {
			q.Quotas = append(q.Quotas, model.Quota{Resource: "cpu", Nominal: rapid.Int64Range(0, 4).Draw(t, "cpunom") * 1000,
				BorrowingLimit: limit("cpuborrow"), LendingLimit: limit("cpulend")})
		}
		s.Queues = append(s.Queues, q)
	}
	all := append([]string{model.DefaultQueue}, names...)
	for _, a := range s.Allocs {
		a.Queue = rapid.SampledFrom(all).Draw(t, "aqueue")
		a.Priority = rapid.IntRange(0, 2).Draw(t, "aprio")
		if rapid.IntRange(0, 5).Draw(t, "stopping") == 0 {
			a.Desired = model.DesiredStop
		}
	}
	// Allocations of one job share queue, priority and owner.
	for _, a := range s.Allocs {
		a.TaskIndex, a.ID = 0, model.AllocID(a.JobID, 0, 1)
	}
	for _, j := range s.Pending {
		j.Queue = rapid.SampledFrom(all).Draw(t, "queue")
	}
	return s, now
}

// TestDurePolicyKeepsTheRules: dure's plans never overcommit, never go
// above quota plus borrowing limit nor into unlent quota, never delay a
// reservation, and preempt only victims that are allowed, needed and
// sufficient.
func TestDurePolicyKeepsTheRules(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genDure(t)
		cfg := Config{ReservationDepth: rapid.SampledFrom([]int{0, 2, -1}).Draw(t, "depth")}
		p := Schedule(s, now, cfg)
		t.Log(dump(s, now, p))
		checkInvariants(t, s, p)
		checkPlanRules(t, s, now, cfg, p)
	})
}
