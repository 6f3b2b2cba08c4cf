package sched

import (
	"cmp"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

// withClones adds copies of some pending jobs (new IDs, submitted at the
// same time or later), so that classes of several jobs form.
func withClones(t *rapid.T, s *Snapshot) {
	next := model.JobID(10_000)
	n := len(s.Pending)
	for i := 0; i < n; i++ {
		for c := rapid.IntRange(0, 6).Draw(t, "clones"); c > 0; c-- {
			j := s.Pending[i].Copy()
			j.ID = next
			next++
			j.SubmitTime = j.SubmitTime.Add(time.Duration(rapid.IntRange(0, 3).Draw(t, "later")) * time.Second)
			s.Pending = append(s.Pending, j)
		}
	}
}

// splitTails moves, for each class of two or more pending jobs, all but a
// drawn number of its first jobs (by submit time, then ID) into a tail.
func splitTails(t *rapid.T, s *Snapshot) *Snapshot {
	count := map[model.JobID]int{}
	for _, j := range s.Pending {
		count[j.ID]++
	}
	classes := map[string][]*model.Job{}
	var keys []string
	out := *s
	out.Pending = nil
	for _, j := range s.Pending {
		k, ok := ClassKey(j)
		if !ok || count[j.ID] > 1 {
			out.Pending = append(out.Pending, j)
			continue
		}
		if classes[k] == nil {
			keys = append(keys, k)
		}
		classes[k] = append(classes[k], j)
	}
	for _, k := range keys {
		js := classes[k]
		slices.SortFunc(js, func(a, b *model.Job) int {
			return cmp.Or(a.SubmitTime.Compare(b.SubmitTime), cmp.Compare(a.ID, b.ID))
		})
		keep := len(js)
		if len(js) > 1 {
			keep = rapid.IntRange(1, len(js)).Draw(t, "keep")
		}
		out.Pending = append(out.Pending, js[:keep]...)
		if keep < len(js) {
			out.Tails = append(out.Tails, Tail{After: js[keep-1].ID, Jobs: js[keep:]})
		}
	}
	return &out
}

// expandTails is plan with its tail reasons listed one job at a time.
func expandTails(p *Plan) *Plan {
	c := *p
	c.Reasons = make(map[model.JobID]model.Reason, len(p.Reasons))
	for id, r := range p.Reasons {
		c.Reasons[id] = r
	}
	for _, tr := range p.Tails {
		for _, j := range tr.Jobs {
			c.Reasons[j.ID] = tr.Reason
		}
	}
	c.Tails = nil
	return &c
}

// TestTailsGiveTheFullPlan: handing in runs of identical jobs as tails
// changes nothing in the plan (every placement, reservation, preemption
// and reason, messages included) against the same jobs all pending,
// whatever the policy and however many of each run are left pending.
func TestTailsGiveTheFullPlan(t *testing.T) {
	tails := 0
	rapid.Check(t, func(t *rapid.T) {
		s, now := genDure(t)
		withClones(t, s)
		cfg := Config{ReservationDepth: rapid.SampledFrom([]int{0, 2, -1}).Draw(t, "depth"),
			Policy: rapid.SampledFrom([]Policy{PolicyDure, PolicyDure, PolicyDure, PolicyEASY}).Draw(t, "policy")}
		want := Schedule(s, now, cfg)
		split := splitTails(t, s)
		got := Schedule(split, now, cfg)
		tails += len(got.Tails)
		if diff := gocmp.Diff(want, expandTails(got)); diff != "" {
			t.Fatalf("tails changed the plan (-all pending +with tails):\n%s\n%s", diff, dump(s, now, want))
		}
	})
	if tails == 0 {
		t.Error("no pass kept a tail apart: the test checks nothing")
	}
}

// The dev cluster's backlog: one run of identical jobs. Its tail is kept
// apart and gets the reason of the last job considered.
func TestBacklogTailSharesItsReason(t *testing.T) {
	full := backlogWorkload(300, 4)
	s := *full
	s.Pending, s.Tails = full.Pending[:50], []Tail{{After: full.Pending[49].ID, Jobs: full.Pending[50:]}}
	p := Schedule(&s, testkit.Epoch, Config{})
	if len(p.Placements) != 4 {
		t.Fatalf("placed %d, want 4", len(p.Placements))
	}
	if len(p.Tails) != 1 || len(p.Tails[0].Jobs) != 250 {
		t.Fatalf("tails = %+v, want the one tail of 250 jobs", p.Tails)
	}
	if want := p.Reasons[full.Pending[49].ID]; p.Tails[0].Reason != want || want.Code != model.ReasonResources {
		t.Errorf("tail reason %+v, want the last pending job's %+v (Resources)", p.Tails[0].Reason, want)
	}
	if _, ok := p.Reasons[full.Pending[50].ID]; ok {
		t.Error("a tail job is in Reasons too")
	}
	// With as many free slots as pending jobs, the last one is placed: the
	// tail might have been, so the pass runs again with it.
	s2 := *backlogWorkload(300, 20)
	s2.Pending, s2.Tails = s2.Pending[:10], []Tail{{After: s2.Pending[9].ID, Jobs: s2.Pending[10:]}}
	p2 := Schedule(&s2, testkit.Epoch, Config{})
	if len(p2.Placements) != 20 || len(p2.Tails) != 0 || len(p2.Reasons) != 280 {
		t.Errorf("placed %d, tails %d, reasons %d; want 20 placed from the tail too, no tails, 280 reasons", len(p2.Placements), len(p2.Tails), len(p2.Reasons))
	}
}
