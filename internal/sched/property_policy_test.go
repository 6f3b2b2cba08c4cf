package sched

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
	// Odd configurations the API should refuse but the scheduler must
	// survive: a self-parent, a cycle, a duplicate name, a negative
	// nominal, a flavored GPU quota.
	switch rapid.IntRange(0, 5).Draw(t, "odd") {
	case 0:
		s.Queues = append(s.Queues, &model.Queue{Name: "self", Parent: "self"})
	case 1:
		s.Queues = append(s.Queues, &model.Queue{Name: "x", Parent: "y"}, &model.Queue{Name: "y", Parent: "x",
			Quotas: []model.Quota{{Resource: "cpu", Nominal: 1000}}})
	case 2:
		s.Queues = append(s.Queues, &model.Queue{Name: "a", Quotas: []model.Quota{{Resource: "gpu", Nominal: -3}}})
	case 3:
		q := s.Queues[len(s.Queues)-1]
		q.Quotas = append(q.Quotas, model.Quota{Resource: "gpu/H100", Nominal: rapid.Int64Range(0, 4).Draw(t, "h100")})
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
	for _, n := range s.Nodes {
		if len(n.GPUs) > 0 && rapid.Bool().Draw(t, "a100") {
			for i := range n.GPUs {
				n.GPUs[i].Model = "A100"
			}
		}
	}
	ids := map[model.JobID]bool{}
	for _, j := range s.Pending {
		ids[j.ID] = true
	}
	s.DependencyStates = map[model.JobID]model.JobState{}
	for _, j := range s.Pending {
		j.Queue = rapid.SampledFrom(all).Draw(t, "queue")
		switch rapid.IntRange(0, 9).Draw(t, "extra") {
		case 0:
			j.Topology = "rack"
		case 1:
			j.MinTasks = rapid.IntRange(1, 3).Draw(t, "min")
		case 2:
			j.Placement = model.PlacementSpread
		case 3:
			dep := model.JobID(rapid.IntRange(1, 25).Draw(t, "dep"))
			j.Dependencies = append(j.Dependencies, model.Dependency{
				Type: rapid.SampledFrom([]model.DependencyType{model.AfterOK, model.AfterAny, model.AfterNotOK, "bogus"}).Draw(t, "deptype"), JobID: dep})
			if !ids[dep] && rapid.Bool().Draw(t, "known") {
				s.DependencyStates[dep] = rapid.SampledFrom([]model.JobState{model.JobRunning, model.JobSucceeded, model.JobFailed, model.JobCancelled}).Draw(t, "depstate")
			}
		case 4:
			j.ArrayParent, j.ArrayThrottle = 100, rapid.IntRange(0, 2).Draw(t, "throttle")
		}
	}
	for id := range ids {
		s.DependencyStates[id] = model.JobPending
	}
	// Preemptions under way: some stopping allocations are being stopped
	// for a pending job, some pending jobs were requeued for one.
	if len(s.Pending) > 0 {
		for _, a := range s.Allocs {
			if a.Desired == model.DesiredStop && rapid.Bool().Draw(t, "stopfor") {
				a.PreemptedBy = rapid.SampledFrom(s.Pending).Draw(t, "preemptor").ID
			}
		}
		for _, j := range s.Pending {
			if rapid.IntRange(0, 5).Draw(t, "requeued") == 0 {
				j.PreemptedBy = rapid.SampledFrom(s.Pending).Draw(t, "requeuedfor").ID
			}
		}
	}
	for _, a := range s.Allocs {
		if rapid.IntRange(0, 4).Draw(t, "inarray") == 0 {
			a.ArrayParent = 100
		}
	}
	for i := rapid.IntRange(0, 6).Draw(t, "history"); i > 0; i-- {
		end := now.Add(-time.Duration(rapid.IntRange(0, 48*60).Draw(t, "ago")) * time.Minute)
		ran := time.Duration(rapid.IntRange(1, 300).Draw(t, "ran")) * time.Minute
		s.History = append(s.History, model.FinishedJob{ID: model.JobID(500 + i), Owner: rapid.SampledFrom([]string{"ann", "bob", "cy"}).Draw(t, "howner"),
			Queue: rapid.SampledFrom(all).Draw(t, "hqueue"), Usage: model.Resources{MilliCPU: 1000, GPUs: rapid.Int64Range(0, 2).Draw(t, "hgpu")},
			Ran: ran, StartTime: end.Add(-ran), EndTime: end})
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

// TestDureIgnoresInputOrder: shuffling every slice of the snapshot (and
// the history) changes nothing in dure's plan, messages included.
func TestDureIgnoresInputOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genDure(t)
		want := Schedule(s, now, Config{})
		shuffled := &Snapshot{
			Nodes:            rapid.Permutation(s.Nodes).Draw(t, "nodes order"),
			Allocs:           rapid.Permutation(s.Allocs).Draw(t, "allocs order"),
			Pending:          rapid.Permutation(s.Pending).Draw(t, "pending order"),
			Queues:           rapid.Permutation(s.Queues).Draw(t, "queues order"),
			History:          rapid.Permutation(s.History).Draw(t, "history order"),
			DependencyStates: s.DependencyStates,
		}
		got := Schedule(shuffled, now, Config{})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("plan depends on input order (-original +shuffled):\n%s", diff)
		}
	})
}

// FuzzSchedule: random snapshots (the property generators driven by the
// fuzzer's bytes) never make any policy panic, and every plan keeps the
// invariants and the policy rules.
func FuzzSchedule(f *testing.F) {
	for _, seed := range [][]byte{{}, {1, 2, 3, 4, 5, 6, 7, 8}, bytes.Repeat([]byte{0x5a, 0x13, 0xff, 0x02}, 64)} {
		f.Add(seed)
	}
	f.Fuzz(rapid.MakeFuzz(func(t *rapid.T) {
		s, now := genDure(t)
		cfg := Config{
			Policy:           rapid.SampledFrom(Policies).Draw(t, "policy"),
			ReservationDepth: rapid.IntRange(-1, 3).Draw(t, "depth"),
			NoPreemption:     rapid.Bool().Draw(t, "nopreempt"),
			NoPredictions:    rapid.Bool().Draw(t, "nopredict"),
		}
		p := Schedule(s, now, cfg)
		t.Log(dump(s, now, p))
		checkInvariants(t, s, p)
		checkPlanRules(t, s, now, cfg, p)
	}))
}
