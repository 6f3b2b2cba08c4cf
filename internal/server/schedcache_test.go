package server

import (
	"bytes"
	"cmp"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/state"
)

// TestSchedCacheMatchesSchedInput drives a store through random job
// lifecycles (submissions, starts, ends with tied end times, retries
// in backoff, reasons logged, rewrites and pruning of finished jobs, a
// restore) and checks after every write that the cached scheduler input
// is exactly what reading the whole state gives, and that the tails'
// reason changes and live ranges are what their jobs say.
func TestSchedCacheMatchesSchedInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	store := state.New()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var cache schedCache
	tails := 0
	var idx uint64
	var nextID model.JobID
	check := func(step int) {
		t.Helper()
		now := base.Add(time.Duration(idx/4) * time.Second)
		snap := cache.snapshot(store)
		in, held, wake := cache.input(snap, now)
		want, wantHeld, wantWake := schedInput(snap, now)
		// The cache hands most of each class of identical jobs over as a
		// tail: with them, the same jobs pending.
		all := append([]*model.Job(nil), in.Pending...)
		for _, tl := range in.Tails {
			all = append(all, tl.Jobs...)
			tails++
		}
		slices.SortFunc(all, func(a, b *model.Job) int { return cmp.Compare(a.ID, b.ID) })
		if !reflect.DeepEqual(all, want.Pending) {
			t.Fatalf("step %d: pending: cached %d jobs (%d in tails), full read %d", step, len(in.Pending), len(all)-len(in.Pending), len(want.Pending))
		}
		checkTails(t, in)
		checkTailReasons(t, &cache, in, step, func(changes map[model.JobID]model.Reason) {
			// As the server does, sometimes: the changed reasons logged.
			if rng.IntN(2) == 0 || len(changes) == 0 {
				return
			}
			idx++
			if err := store.Write(idx, func(tx *state.WriteTxn) error {
				for id, r := range changes {
					c := *store.Snapshot().Job(id)
					c.Reason = r
					tx.PutJob(&c)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
		if !reflect.DeepEqual(in.History, want.History) {
			t.Fatalf("step %d: history differs: cached %d jobs, full read %d", step, len(in.History), len(want.History))
		}
		if !reflect.DeepEqual(held, wantHeld) || !wake.Equal(wantWake) {
			t.Fatalf("step %d: held jobs or wake time differ", step)
		}
	}
	put := func(j *model.Job) {
		idx++
		if err := store.Write(idx, func(tx *state.WriteTxn) error { tx.PutJob(j); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	sawFull := false
	for step := range 12000 {
		snap := store.Snapshot()
		switch op := rng.IntN(10); {
		case op < 2 || nextID < 5: // submit one or a few
			idx++
			n := 1 + rng.IntN(3)
			at := base.Add(time.Duration(idx) * time.Second)
			if rng.IntN(40) == 0 { // another leader's clock, behind
				at = at.Add(-time.Duration(rng.IntN(100)) * time.Second)
			}
			if err := store.Write(idx, func(tx *state.WriteTxn) error {
				for range n {
					nextID++
					owner := "u"
					if rng.IntN(3) == 0 {
						owner = "batch" // never retried: its classes may get tails
					}
					tx.PutJob(&model.Job{ID: nextID, State: model.JobPending, Owner: owner, Queue: "default",
						SubmitTime: at,
						Groups:     []model.TaskGroup{{Name: "main", Count: 1 + rng.IntN(2), Resources: model.Resources{MilliCPU: 100}}}})
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		case op < 8: // move a random recent job along
			id := nextID - model.JobID(rng.IntN(min(int(nextID), 300)))
			j := snap.Job(id)
			if j == nil {
				continue
			}
			c := *j
			at := base.Add(time.Duration(idx/4) * time.Second) // coarse: ties in end times
			switch {
			case c.State == model.JobPending && rng.IntN(5) == 0: // a reason logged
				c.Reason = model.Reason{Code: reasonCodes[rng.IntN(len(reasonCodes))]}
			case c.State == model.JobPending && rng.IntN(8) == 0:
				c.State = model.JobCancelled // never ran: not history
				c.EndTime = at
			case c.State == model.JobPending && !c.EligibleAt.After(at):
				c.State, c.StartTime = model.JobRunning, at
			case c.State == model.JobRunning && c.Owner != "batch" && rng.IntN(6) == 0: // retry after a backoff
				c.State, c.StartTime, c.Attempt = model.JobPending, time.Time{}, c.Attempt+1
				c.EligibleAt = base.Add(time.Duration(idx/4+uint64(rng.IntN(20))) * time.Second)
			case c.State == model.JobRunning:
				c.State, c.EndTime, c.ExitCode = model.JobSucceeded, at, rng.IntN(2)
			case c.State.Terminal(): // rewritten without a change that matters
			default:
				continue
			}
			put(&c)
		case op < 9: // prune a finished job
			id := model.JobID(1 + rng.IntN(int(nextID)))
			if j := snap.Job(id); j != nil && j.State.Terminal() {
				idx++
				if err := store.Write(idx, func(tx *state.WriteTxn) error { tx.DeleteJob(id); return nil }); err != nil {
					t.Fatal(err)
				}
			}
		default: // a write that touches no job
			idx++
			if err := store.Write(idx, func(tx *state.WriteTxn) error {
				tx.PutNode(&model.Node{Name: "n1"})
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if step == 9000 { // a restore: the cache must read everything again
			var buf bytes.Buffer
			if err := store.Snapshot().Persist(&buf); err != nil {
				t.Fatal(err)
			}
			if err := store.Restore(&buf); err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(4) == 0 || step > 11900 {
			check(step)
			sawFull = sawFull || cache.full
		}
	}
	if tails == 0 {
		t.Fatal("no pass got a tail: the test does not cover them")
	}
	if !sawFull {
		t.Fatalf("the history window never filled (%d jobs): the test does not cover eviction", nextID)
	}
}

// checkTails checks the scheduler's contract for tails: each tail's jobs
// are of its After's class and come after every pending job of the class
// in (SubmitTime, ID) order.
func checkTails(t *testing.T, in *sched.Snapshot) {
	t.Helper()
	if len(in.Tails) == 0 {
		return
	}
	later := func(a, b *model.Job) bool { // a after b
		return cmp.Or(a.SubmitTime.Compare(b.SubmitTime), cmp.Compare(a.ID, b.ID)) > 0
	}
	byID := map[model.JobID]*model.Job{}
	latest := map[string]*model.Job{} // per class, its pending job last in order
	for _, j := range in.Pending {
		byID[j.ID] = j
		if k, ok := sched.ClassKey(j); ok && (latest[k] == nil || later(j, latest[k])) {
			latest[k] = j
		}
	}
	for _, tl := range in.Tails {
		after := byID[tl.After]
		if after == nil {
			t.Fatalf("tail after job %d, which is not pending", tl.After)
		}
		key, _ := sched.ClassKey(after)
		for _, j := range tl.Jobs {
			if k, ok := sched.ClassKey(j); !ok || k != key || !j.EligibleAt.IsZero() {
				t.Fatalf("tail job %d is not of its After's (%d) class", j.ID, tl.After)
			}
			if p := latest[key]; !later(j, p) {
				t.Fatalf("tail job %d does not come after pending job %d of its class", j.ID, p.ID)
			}
		}
	}
}

var reasonCodes = []string{"resources", "priority", "quota"}

// checkTailReasons checks, for a plan giving each tail of in a reason,
// that the cache names exactly the tail jobs whose logged code differs
// (then hands them to logged) and the tails' first and last jobs.
func checkTailReasons(t *testing.T, c *schedCache, in *sched.Snapshot, step int, logged func(map[model.JobID]model.Reason)) {
	t.Helper()
	var trs []sched.TailReason
	want := map[model.JobID]model.Reason{}
	for i, tl := range in.Tails {
		r := model.Reason{Code: reasonCodes[(step+i)%len(reasonCodes)]}
		trs = append(trs, sched.TailReason{After: tl.After, Jobs: tl.Jobs, Reason: r})
		for _, j := range tl.Jobs {
			if j.Reason.Code != r.Code {
				want[j.ID] = r
			}
		}
	}
	got := map[model.JobID]model.Reason{}
	c.tailReasonChanges(trs, got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("step %d: tail reason changes: cached %d jobs, the tails' jobs say %d", step, len(got), len(want))
	}
	live := c.liveTails(trs)
	for _, tr := range trs {
		key, _ := sched.ClassKey(tr.Jobs[0])
		lt := live[key]
		if lt.first != tr.Jobs[0].ID || lt.last != tr.Jobs[len(tr.Jobs)-1].ID || lt.reason != tr.Reason {
			t.Fatalf("step %d: live tail of class %q: %d to %d, want %d to %d", step, key, lt.first, lt.last, tr.Jobs[0].ID, tr.Jobs[len(tr.Jobs)-1].ID)
		}
	}
	logged(got)
}
