package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
)

// twoQueues is a 4-processor machine shared by queues q1 and q2 (SWF field
// 15), each guaranteed 2 processors in one cohort. Job 1 (q1) takes all 4
// at 0, borrowing q2's share; job 2 (q2) asks for its 2 at 10.
const twoQueues = `; MaxProcs: 4
1  0 -1 100 4 -1 -1 4 100 -1 1 1 1 -1 1 -1 -1 -1
2 10 -1  50 2 -1 -1 2 100 -1 1 2 2 -1 2 -1 -1 -1
`

const twoQueuesConfig = `
queues:
  - name: cohort
  - {name: q1, parent: cohort, quotas: [{resource: cpu, nominal: 2000}]}
  - {name: q2, parent: cohort, quotas: [{resource: cpu, nominal: 2000}]}
`

// Queue q2 reclaims the 2 processors it lent to q1 by preempting job 1,
// once: the requeued job 1 may not borrow them back while job 2 waits for
// them or runs, and no pass chooses more victims while job 1 stops.
func TestDurePolicyReclaimsLentQuotaByPreemption(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
	}{
		{"stopped at once", 0},
		{"with a 5 s grace", 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ReadSWF(strings.NewReader(twoQueues), "two.swf")
			if err != nil {
				t.Fatal(err)
			}
			queues, err := ReadQueues([]byte(twoQueuesConfig))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(tr, Options{Config: sched.Config{Policy: sched.PolicyDure, PreemptGrace: tc.grace},
				Queues: queues, PreemptionGrace: tc.grace})
			if err != nil {
				t.Fatal(err)
			}
			if res.Preemptions != 1 || res.LostWork != 40 {
				t.Errorf("%d preemptions losing %v cpu·s; want job 1 stopped once at 10 s, losing 4 cpus × 10 s = 40", res.Preemptions, res.LostWork)
			}
			byID := map[model.JobID]JobResult{}
			for _, r := range res.Jobs {
				byID[r.ID] = r
			}
			// Job 2 starts once job 1 has stopped and runs its 50 s; job 1
			// needs all 4 processors, so it starts over when job 2 ends.
			start2 := 10*time.Second + tc.grace
			if j2 := byID[2]; j2.Start != start2 || j2.End != start2+50*time.Second {
				t.Errorf("job 2 ran %s–%s; want %s–%s: q2 is owed its 2 cpus once job 1 has stopped", j2.Start, j2.End, start2, start2+50*time.Second)
			}
			if j1 := byID[1]; j1.Preempted != 1 || j1.Start != start2+50*time.Second || j1.Run != 100*time.Second {
				t.Errorf("job 1 = %+v; want preempted once, then a full 100 s run from %s", j1, start2+50*time.Second)
			}
		})
	}
}

// The mechanics of stopping and requeueing, independent of which policy
// asks: a stand-in scheduler preempts job 1 for job 2 once.
func TestPreemptionStopsRequeuesAndHonoursTheGrace(t *testing.T) {
	// Job 3 arrives during the grace period, so that a pass happens while
	// job 1 is stopping.
	const trace = `; MaxProcs: 2
1 0 -1 100 2 -1 -1 2 100 -1 1 1 1 -1 -1 -1 -1 -1
2 10 -1 20 2 -1 -1 2 100 -1 1 1 1 -1 -1 -1 -1 -1
3 12 -1 1 1 -1 -1 1 100 -1 1 1 1 -1 -1 -1 -1 -1
`
	for _, tc := range []struct {
		name  string
		grace time.Duration
		// job 2 starts when job 1 has stopped: at 10 + grace
		wantStart2 time.Duration
	}{
		{"at once", 0, 10 * time.Second},
		{"after a 5 s grace", 5 * time.Second, 15 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ReadSWF(strings.NewReader(trace), "p.swf")
			if err != nil {
				t.Fatal(err)
			}
			preempted := false
			var sawStopping bool
			// The stand-in is FIFO, except that it preempts job 1 for job 2
			// once and then starts job 2 as soon as the machine is empty.
			stub := func(s *sched.Snapshot, now time.Time, cfg sched.Config) *sched.Plan {
				for _, a := range s.Allocs {
					sawStopping = sawStopping || a.Desired == model.DesiredStop
				}
				pending2 := false
				for _, j := range s.Pending {
					pending2 = pending2 || j.ID == 2
				}
				switch {
				case !preempted && len(s.Allocs) == 1 && s.Allocs[0].JobID == 1 && pending2:
					preempted = true
					return &sched.Plan{Preemptions: []sched.Preemption{{JobID: 1, AllocIDs: []string{s.Allocs[0].ID}, Preemptor: 2}}}
				case preempted && len(s.Allocs) == 0 && pending2:
					return &sched.Plan{Placements: []sched.Placement{{JobID: 2, Group: "main", Node: "machine", Resources: model.Resources{MilliCPU: 2000}}}}
				}
				return sched.Schedule(s, now, sched.Config{Policy: sched.PolicyFIFO})
			}
			res, err := run(tr, Options{PreemptionGrace: tc.grace}, stub)
			if err != nil {
				t.Fatal(err)
			}
			got := map[model.JobID][3]time.Duration{}
			for _, r := range res.Jobs {
				if r.ID == 3 {
					continue
				}
				got[r.ID] = [3]time.Duration{r.Start, r.End, time.Duration(r.Preempted)}
			}
			want := map[model.JobID][3]time.Duration{
				2: {tc.wantStart2, tc.wantStart2 + 20*time.Second, 0},
				// job 1 starts over when job 2 ends and runs its full 100 s
				1: {tc.wantStart2 + 20*time.Second, tc.wantStart2 + 120*time.Second, 1},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(start, end, times preempted) by job (-want +got):\n%s", diff)
			}
			if res.Preemptions != 1 || res.LostWork != 2*10 {
				t.Errorf("%d preemptions, lost %v cpu·s; want 1 and 20 (2 cpus × the 10 s it had run when preempted)", res.Preemptions, res.LostWork)
			}
			if sawStopping != (tc.grace > 0) {
				t.Errorf("scheduler saw a stopping allocation: %v; want it only during a grace period", sawStopping)
			}
		})
	}
}

func TestQueueSharesCompareUseUnderContentionWithFairShare(t *testing.T) {
	// FIFO on 2 cpus: job 1 (q1) runs 0–10 on both; job 2 (q2), submitted
	// at 0, waits and runs 10–20. Jobs waited only during 0–10, when q1 held
	// everything: q1's share under contention is 100%, q2's 0%; each had
	// half of the demand and, with equal weights, half the fair share.
	const trace = `; MaxProcs: 2
1 0 -1 10 2 -1 -1 2 10 -1 1 1 1 -1 1 -1 -1 -1
2 0 -1 10 2 -1 -1 2 10 -1 1 2 2 -1 2 -1 -1 -1
`
	tr, err := ReadSWF(strings.NewReader(trace), "q.swf")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(tr, Options{Config: sched.Config{Policy: sched.PolicyFIFO}})
	if err != nil {
		t.Fatal(err)
	}
	want := []QueueShare{
		{Queue: "q1", Jobs: 1, Share: 1, FairShare: 0.5, Demand: 0.5, MeanWait: 0, MeanBSLD: 1},
		{Queue: "q2", Jobs: 1, Share: 0, FairShare: 0.5, Demand: 0.5, MeanWait: 10 * time.Second, MeanBSLD: 2},
	}
	if diff := cmp.Diff(want, res.Queues); diff != "" {
		t.Errorf("queue shares (-want +got):\n%s", diff)
	}
	if res.Contention != 10*time.Second {
		t.Errorf("contention %s, want 10s (job 2 waited from 0 to 10)", res.Contention)
	}
}
