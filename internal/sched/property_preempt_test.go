package sched

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// genContended draws a busy cluster where preemption is likely: a few
// nodes (some with GPUs) full of running jobs of low priority, spread over
// a cohort of queues with quotas (often borrowing) or one unlimited queue,
// and pending jobs of higher priority or in queues owed their quota. It
// also checks the rules every plan must keep.
func genContended(t *rapid.T) (*Snapshot, time.Time) {
	now := testkit.Epoch.Add(10 * time.Hour)
	s := &Snapshot{}
	for i := rapid.IntRange(1, 4).Draw(t, "nodes"); i > 0; i-- {
		b := testkit.Node(fmt.Sprintf("n%d", i)).MilliCPU(rapid.SampledFrom([]int64{4000, 8000}).Draw(t, "cpu")).Mem("16G")
		if rapid.Bool().Draw(t, "gpu") {
			b.GPUs(4)
		}
		b.Label("rack", rapid.SampledFrom([]string{"r1", "r2"}).Draw(t, "rack"))
		s.Nodes = append(s.Nodes, b.Build())
	}
	queues := []string{model.DefaultQueue}
	if rapid.Bool().Draw(t, "quotas") {
		queues = []string{"a", "b", "c"}[:rapid.IntRange(2, 3).Draw(t, "queues")]
		s.Queues = append(s.Queues, &model.Queue{Name: "cohort"})
		for _, n := range queues {
			q := &model.Queue{Name: n, Parent: "cohort"}
			q.Quotas = append(q.Quotas, model.Quota{Resource: "cpu", Nominal: rapid.Int64Range(0, 8).Draw(t, "cpunom") * 1000})
			if rapid.Bool().Draw(t, "gpuquota") {
				q.Quotas = append(q.Quotas, model.Quota{Resource: "gpu", Nominal: rapid.Int64Range(0, 4).Draw(t, "gpunom")})
			}
			s.Queues = append(s.Queues, q)
		}
	}
	id := model.JobID(100)
	for _, n := range s.Nodes {
		free := n.Capacity.Copy()
		gpu := 0
		for k := rapid.IntRange(0, 4).Draw(t, "running"); k > 0; k-- {
			r := model.Resources{MilliCPU: rapid.SampledFrom([]int64{1000, 2000, 4000}).Draw(t, "acpu"), MemoryBytes: 1 << 30}
			if n.Capacity.GPUs > 0 {
				r.GPUs = rapid.Int64Range(0, 2).Draw(t, "agpu")
			}
			if !free.Fits(r) || int64(gpu)+r.GPUs > n.Capacity.GPUs {
				continue
			}
			free = free.Sub(r)
			var idx []int
			for g := int64(0); g < r.GPUs; g++ {
				idx = append(idx, gpu)
				gpu++
			}
			id++
			a := testkit.Alloc(id, 0, n.Name).Resources(r).GPUIndices(idx...).
				Queue(rapid.SampledFrom(queues).Draw(t, "aqueue")).Priority(rapid.IntRange(0, 2).Draw(t, "aprio")).
				Owner("ann").Walltime(24 * time.Hour).Started(now.Add(-time.Duration(rapid.IntRange(1, 300).Draw(t, "ago")) * time.Minute)).Build()
			s.Allocs = append(s.Allocs, a)
		}
	}
	for i := rapid.IntRange(1, 4).Draw(t, "pending"); i > 0; i-- {
		b := testkit.Job(model.JobID(i)).Owner("bob").Submitted(now.Add(-time.Duration(i) * time.Minute)).
			Queue(rapid.SampledFrom(queues).Draw(t, "queue")).Priority(rapid.IntRange(0, 5).Draw(t, "prio")).
			Tasks(rapid.IntRange(1, 3).Draw(t, "tasks")).MilliCPU(rapid.SampledFrom([]int64{1000, 2000, 4000, 8000}).Draw(t, "cpu")).
			Walltime(time.Duration(rapid.IntRange(1, 4).Draw(t, "wall")) * time.Hour)
		if rapid.IntRange(0, 2).Draw(t, "wantgpu") == 0 {
			b.GPUs(rapid.IntRange(1, 2).Draw(t, "gpus"))
		}
		if rapid.IntRange(0, 4).Draw(t, "topology") == 0 {
			b.Topology("rack")
		}
		s.Pending = append(s.Pending, b.Build())
	}
	return s, now
}

// TestDurePreemptsOnlyToStart: on contended clusters, every preemption is
// allowed, sufficient and minimal (checked against the naive placement
// and quota of the reference), and the other rules hold.
func TestDurePreemptsOnlyToStart(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genContended(t)
		cfg := Config{}
		p := Schedule(s, now, cfg)
		t.Log(dump(s, now, p))
		checkInvariants(t, s, p)
		checkPlanRules(t, s, now, cfg, p)
	})
}

// TestDurePreemptionIsStable plays a preemption through as a server does
// (Plan.Preemptions, README.md): the plan's placements start, its victims
// are marked as stopping for their preemptor (Desired=stop, PreemptedBy).
//
//   - The next pass in the same world chooses no new victims for those
//     preemptors; a lone preemptor still says Preempting, reserved at
//     now + grace, and never gets QuotaExceeded.
//   - A grace period later, its victims stopped and requeued (and whatever
//     was expected to end by then gone), a lone preemptor starts.
func TestDurePreemptionIsStable(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var s *Snapshot
		var now time.Time
		if rapid.IntRange(0, 3).Draw(t, "generator") == 0 {
			s, now = genDure(t)
		} else {
			s, now = genContended(t)
		}
		cfg := Config{ReservationDepth: rapid.SampledFrom([]int{0, 2, -1}).Draw(t, "depth")}
		p1 := Schedule(s, now, cfg)
		if len(p1.Preemptions) == 0 {
			return
		}
		t.Log("first pass:\n" + dump(s, now, p1))
		preemptors := map[model.JobID]bool{}
		for _, pr := range p1.Preemptions {
			preemptors[pr.Preemptor] = true
		}
		lone := len(preemptors) == 1 && !preemptionsUnderWay(s)

		s2 := underWay(s, now, p1)
		p2 := Schedule(s2, now, cfg)
		t.Log("while the victims stop:\n" + dump(s2, now, p2))
		checkInvariants(t, s2, p2)
		checkPlanRules(t, s2, now, cfg, p2)
		for _, pr := range p2.Preemptions {
			if preemptors[pr.Preemptor] {
				t.Fatalf("preemptor %d chose victim %d while its first victims still stop", pr.Preemptor, pr.JobID)
			}
		}
		if !lone {
			return
		}
		var pid model.JobID
		for id := range preemptors {
			pid = id
		}
		if slices.ContainsFunc(p2.Placements, func(p Placement) bool { return p.JobID == pid }) {
			return // it fits now beside its stopping victims (they hold no quota)
		}
		if r := p2.Reasons[pid]; r.Code != model.ReasonPreempting {
			t.Fatalf("preemptor %d while its victims stop: %s %q, want %s", pid, r.Code, r.Message, model.ReasonPreempting)
		}
		var job *model.Job
		for _, j := range s.Pending {
			if j.ID == pid {
				job = j
			}
		}
		if job.ArrayParent != 0 {
			return // elements started meanwhile may hold it to its throttle
		}

		later := now.Add(time.Minute) // the default grace
		s3 := stopped(s2, now, later, cfg, p1)
		p3 := Schedule(s3, later, cfg)
		t.Log("once they stopped:\n" + dump(s3, later, p3))
		checkInvariants(t, s3, p3)
		if !slices.ContainsFunc(p3.Placements, func(p Placement) bool { return p.JobID == pid }) {
			t.Fatalf("preemptor %d did not start once its victims stopped: %s %q", pid, p3.Reasons[pid].Code, p3.Reasons[pid].Message)
		}
	})
}

// preemptionsUnderWay: some allocation stops, or some pending job was
// requeued, for a pending job.
func preemptionsUnderWay(s *Snapshot) bool {
	pending := map[model.JobID]bool{}
	for _, j := range s.Pending {
		pending[j.ID] = true
	}
	for _, j := range s.Pending {
		if pending[j.PreemptedBy] {
			return true
		}
	}
	for _, a := range s.Allocs {
		if a.Desired == model.DesiredStop && pending[a.PreemptedBy] {
			return true
		}
	}
	return false
}

// underWay is s after a server carried out p: its placements run (started
// now), its victims stop for their preemptors.
func underWay(s *Snapshot, now time.Time, p *Plan) *Snapshot {
	victimOf := map[model.JobID]model.JobID{}
	for _, pr := range p.Preemptions {
		victimOf[pr.JobID] = pr.Preemptor
	}
	jobs := map[model.JobID]*model.Job{}
	for _, j := range s.Pending {
		jobs[j.ID] = j
	}
	placed := map[model.JobID]bool{}
	out := *s
	out.Allocs = nil
	for _, a := range s.Allocs {
		c := a.Copy()
		if by, ok := victimOf[a.JobID]; ok && !a.Status.Terminal() {
			c.Desired, c.PreemptedBy = model.DesiredStop, by
		}
		out.Allocs = append(out.Allocs, c)
	}
	for _, pl := range p.Placements {
		j := jobs[pl.JobID]
		placed[j.ID] = true
		out.Allocs = append(out.Allocs, &model.Allocation{
			ID: model.AllocID(j.ID, pl.TaskIndex, 1), JobID: j.ID, Group: pl.Group, TaskIndex: pl.TaskIndex,
			Node: pl.Node, Resources: pl.Resources, GPUIndices: pl.GPUIndices, Walltime: j.Walltime,
			Owner: j.Owner, Queue: j.Queue, Priority: j.Priority, ArrayParent: j.ArrayParent,
			Desired: model.DesiredRun, Status: model.AllocRunning, CreatedAt: now, StartedAt: now,
		})
	}
	out.Pending = nil
	for _, j := range s.Pending {
		if !placed[j.ID] {
			out.Pending = append(out.Pending, j)
		}
	}
	return &out
}

// stopped is s (victims stopping, from underWay) at `later`: the victims
// of p have stopped and are pending again, marked with their preemptor,
// and every allocation expected (at now) to end by then has ended.
func stopped(s *Snapshot, now, later time.Time, cfg Config, p *Plan) *Snapshot {
	victimOf := map[model.JobID]model.JobID{}
	for _, pr := range p.Preemptions {
		victimOf[pr.JobID] = pr.Preemptor
	}
	est := naiveEstimates(s, now, cfg)
	out := *s
	out.Allocs = nil
	requeued := map[model.JobID]*model.Job{}
	for _, a := range s.Allocs {
		if a.Status.Terminal() {
			continue
		}
		if by, ok := victimOf[a.JobID]; ok {
			if requeued[a.JobID] == nil {
				// The victim's job as the server requeues it: its
				// allocation's request, queue, priority and owner.
				requeued[a.JobID] = &model.Job{ID: a.JobID, Owner: a.Owner, Queue: a.Queue, Priority: a.Priority,
					Walltime: a.Walltime, State: model.JobPending, SubmitTime: now.Add(-time.Hour), PreemptedBy: by,
					Groups: []model.TaskGroup{{Name: "main", Count: 1, Resources: a.Resources.Copy()}}}
			} else {
				requeued[a.JobID].Groups[0].Count++
			}
			continue
		}
		if est.allocEnd(a).After(later) {
			out.Allocs = append(out.Allocs, a)
		}
	}
	out.Pending = append([]*model.Job(nil), s.Pending...)
	ids := make([]model.JobID, 0, len(requeued))
	for id := range requeued {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		out.Pending = append(out.Pending, requeued[id])
	}
	return &out
}
