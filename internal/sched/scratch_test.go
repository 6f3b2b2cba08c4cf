package sched

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
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
