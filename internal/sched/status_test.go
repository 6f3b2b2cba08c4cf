package sched

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// TestQueues: the numbers `dure queues` shows, for a cohort where nlp
// borrows 4 of vision's GPUs and vision lends at most 6.
func TestQueues(t *testing.T) {
	s := &Snapshot{
		Nodes: []*model.Node{testkit.Node("g").CPU(64).Mem("256G").GPUs(16).Build()},
		Queues: []*model.Queue{
			testkit.NewQueue("research").Build(),
			testkit.NewQueue("vision").Parent("research").Quota("gpu", 8).Lend(6).Build(),
			testkit.NewQueue("nlp").Parent("research").Weight(2).Quota("gpu", 8).Borrow(4).Build(),
		},
		Allocs: []*model.Allocation{
			testkit.Alloc(1, 0, "g").GPUIndices(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11).Queue("nlp").Build(),
			testkit.Alloc(2, 0, "g").GPUIndices(12).Queue("vision").Build(),
		},
	}
	got := Queues(s, testkit.Epoch, Config{})
	want := []QueueStatus{
		{Name: "nlp", Parent: "research", Weight: 2, Resources: []QueueResource{
			// 12 used of 8 nominal: 4 borrowed, and the borrowing limit (4)
			// leaves no room.
			{Resource: "gpu", Nominal: 8, Effective: 8, BorrowingLimit: 4, LendingLimit: -1, Used: 12, Borrowed: 4, Lendable: 0, Room: 0},
		}},
		{Name: "research", Weight: 1, Resources: []QueueResource{
			// 3 free in the cohort, but 1 of them is vision's and not lent
			// (7 unused, lends 6): a job in research itself gets 2.
			{Resource: "gpu", Nominal: 0, Effective: 16, BorrowingLimit: -1, LendingLimit: -1, Used: 13, Borrowed: 0, Lendable: 3, Room: 2},
		}},
		{Name: "vision", Parent: "research", Weight: 1, Resources: []QueueResource{
			// 1 used: 7 unused, of which it lends at most 6; nlp uses 4.
			{Resource: "gpu", Nominal: 8, Effective: 8, BorrowingLimit: -1, LendingLimit: 6, Used: 1, Borrowed: 0, Lendable: 6, Lent: 4, Room: 3},
		}},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(QueueStatus{}, "Share")); diff != "" {
		t.Errorf("Queues (-want +got):\n%s", diff)
	}
	// nlp holds 12 of 16 GPUs at weight 2: share 12/16/2 plus its (zero)
	// past; vision 1/16.
	for _, q := range got {
		want := map[string]float64{"nlp": 12.0 / 16 / 2, "vision": 1.0 / 16, "research": 13.0 / 16}[q.Name]
		if q.Share < want-1e-9 || q.Share > want+1e-9 {
			t.Errorf("queue %s: share %v, want %v", q.Name, q.Share, want)
		}
	}
}

// TestQueuesLent: what each queue has lent is the borrowed usage of its
// cohort split in proportion to what each can lend, the units left over
// to the largest remainders (ties by name); the parent's own unused
// nominal lends too but is not a sibling's.
func TestQueuesLent(t *testing.T) {
	gpus := func(a, b int) []int {
		var xs []int
		for i := a; i < b; i++ {
			xs = append(xs, i)
		}
		return xs
	}
	lentOf := func(s *Snapshot) map[string]int64 {
		out := map[string]int64{}
		for _, q := range Queues(s, testkit.Epoch, Config{}) {
			for _, r := range q.Resources {
				if r.Resource == "gpu" && r.Lent != 0 {
					out[q.Name] = r.Lent
				}
			}
		}
		return out
	}
	node := []*model.Node{testkit.Node("g").CPU(64).Mem("256G").GPUs(32).Build()}
	// c borrows 6: a can lend 6 (8 − 2), b 2 (its lending limit): 4.5 and
	// 1.5, the half unit to a (same remainder, first by name).
	s := &Snapshot{
		Nodes: node,
		Queues: []*model.Queue{
			testkit.NewQueue("org").Build(),
			testkit.NewQueue("a").Parent("org").Quota("gpu", 8).Build(),
			testkit.NewQueue("b").Parent("org").Quota("gpu", 4).Lend(2).Build(),
			testkit.NewQueue("c").Parent("org").Quota("gpu", 4).Build(),
		},
		Allocs: []*model.Allocation{
			testkit.Alloc(1, 0, "g").GPUIndices(gpus(0, 2)...).Queue("a").Build(),
			testkit.Alloc(2, 0, "g").GPUIndices(gpus(2, 12)...).Queue("c").Build(),
		},
	}
	if diff := cmp.Diff(map[string]int64{"a": 5, "b": 1}, lentOf(s)); diff != "" {
		t.Errorf("lent with no quota of org's own (-want +got):\n%s", diff)
	}
	// org's own 4 unused GPUs lend too: 6 borrowed of 12 lendable, half
	// of each: a 3, b 1 (and org's own 2, shown on no sibling).
	s.Queues[0] = testkit.NewQueue("org").Quota("gpu", 4).Build()
	if diff := cmp.Diff(map[string]int64{"a": 3, "b": 1}, lentOf(s)); diff != "" {
		t.Errorf("lent with org's own quota (-want +got):\n%s", diff)
	}
	// Jobs of org itself using 6 of its own 4 borrow 2 more: 8 of 8
	// lendable (a 6, b 2) are lent.
	s.Allocs = append(s.Allocs, testkit.Alloc(3, 0, "g").GPUIndices(gpus(12, 18)...).Queue("org").Build())
	if diff := cmp.Diff(map[string]int64{"a": 6, "b": 2}, lentOf(s)); diff != "" {
		t.Errorf("lent with org's jobs borrowing (-want +got):\n%s", diff)
	}
}

// TestQueuesShareRemembersThePast: a queue idle now that used the whole
// cluster until an hour ago (half-life 1h) has about half of that share.
func TestQueuesShareRemembersThePast(t *testing.T) {
	s := &Snapshot{
		Nodes:  []*model.Node{testkit.Node("n").CPU(10).Mem("10G").Build()},
		Queues: []*model.Queue{testkit.NewQueue("a").Build(), testkit.NewQueue("b").Build()},
		History: []model.FinishedJob{{ID: 1, Owner: "ann", Queue: "a", Usage: model.Resources{MilliCPU: 10000},
			Ran: 100 * time.Hour, StartTime: testkit.Epoch.Add(-101 * time.Hour), EndTime: testkit.Epoch.Add(-time.Hour)}},
	}
	got := Queues(s, testkit.Epoch, Config{FairShareHalfLife: time.Hour})
	if len(got) != 2 || got[0].Name != "a" || got[0].Share < 0.49 || got[0].Share > 0.51 {
		t.Fatalf("queues = %+v, want a with share about 0.5", got)
	}
	if got[1].Name != "b" || got[1].Share != 0 {
		t.Errorf("queue b: %+v, want share 0", got[1])
	}
}
