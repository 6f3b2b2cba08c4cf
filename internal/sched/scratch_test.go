package sched

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// TestScratchChangesNoPlan: passes that share one Scratch, over snapshots
// of any size and any policy in turn, make the plans fresh passes make;
// and a plan already returned stays as it was while later passes reuse
// the Scratch (it points into none of it).
func TestScratchChangesNoPlan(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var sc Scratch
		type made struct {
			plan, copy *Plan
		}
		var plans []made
		for i := range rapid.IntRange(2, 4).Draw(t, "passes") {
			s, now := genDure(t)
			cfg := Config{
				Policy:           rapid.SampledFrom(Policies).Draw(t, "policy"),
				ReservationDepth: rapid.IntRange(-1, 3).Draw(t, "depth"),
			}
			want := Schedule(s, now, cfg)
			got := sc.Schedule(s, now, cfg)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("pass %d: a used Scratch changes the plan (-fresh +scratch):\n%s", i, diff)
			}
			plans = append(plans, made{got, Schedule(s, now, cfg)})
		}
		for i, m := range plans {
			if diff := cmp.Diff(m.copy, m.plan); diff != "" {
				t.Fatalf("plan %d changed after later passes reused its Scratch:\n%s", i, diff)
			}
		}
	})
}

// TestScratchMemoIsPerPass: what one pass worked out about a job shape
// (groupFacts' memo, kept in the Scratch) is not taken for the same shape
// in the next pass, whose numbering differs: here the second pass would
// explain a 1-CPU job with a 2-CPU job's shortage.
func TestScratchMemoIsPerPass(t *testing.T) {
	nodes := []*model.Node{testkit.Node("small").MilliCPU(500).Mem("8G").Build()}
	first := &Snapshot{Nodes: nodes, Pending: []*model.Job{testkit.Job(1).MilliCPU(1000).Build()}}
	second := &Snapshot{Nodes: nodes, Pending: []*model.Job{testkit.Job(2).MilliCPU(2000).Build(), testkit.Job(3).MilliCPU(1000).Build()}}
	var sc Scratch
	sc.Schedule(first, testkit.Epoch, Config{})
	got := sc.Schedule(second, testkit.Epoch, Config{})
	want := Schedule(second, testkit.Epoch, Config{})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("the second pass on a used Scratch differs (-fresh +scratch):\n%s", diff)
	}
	if !strings.Contains(got.Reasons[3].Message, "cpu=1 ") {
		t.Errorf("job 3 (1 CPU): %q; want its own shortage", got.Reasons[3].Message)
	}
}
