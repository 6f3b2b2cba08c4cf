package state_test

import (
	"bytes"
	"cmp"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
	"github.com/durehq/dure/internal/testkit"
)

// write applies fn at idx and fails the test on error.
func write(t testing.TB, s *state.Store, idx uint64, fn func(tx *state.WriteTxn)) {
	t.Helper()
	if err := s.Write(idx, func(tx *state.WriteTxn) error { fn(tx); return nil }); err != nil {
		t.Fatalf("Write(%d): %v", idx, err)
	}
}

// persisted is a new store restored from a snapshot of s.
func persisted(t testing.TB, s *state.Store) *state.Store {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Snapshot().Persist(&buf); err != nil {
		t.Fatal(err)
	}
	restored := state.New()
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	return restored
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func jobIDs(jobs []*model.Job) []model.JobID {
	var out []model.JobID
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func allocIDs(as []*model.Allocation) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func TestSnapshotDoesNotSeeLaterWrites(t *testing.T) {
	s := state.New()
	write(t, s, 1, func(tx *state.WriteTxn) { tx.PutJob(testkit.Job(1).Build()) })
	before := s.Snapshot()

	write(t, s, 2, func(tx *state.WriteTxn) {
		j := tx.Job(1).Copy()
		j.State = model.JobRunning
		tx.PutJob(j)
		tx.PutJob(testkit.Job(2).Build())
		tx.PutNode(testkit.Node("n1").CPU(4).Build())
	})

	if got := before.Job(1).State; got != model.JobPending {
		t.Errorf("old snapshot sees job 1 as %s; want pending (the write came after it)", got)
	}
	if before.Job(2) != nil || before.Node("n1") != nil {
		t.Error("old snapshot sees job 2 or node n1, written after it was taken")
	}
	if before.Index != 1 {
		t.Errorf("old snapshot Index = %d; want 1", before.Index)
	}
	after := s.Snapshot()
	if got := after.Job(1).State; got != model.JobRunning {
		t.Errorf("new snapshot sees job 1 as %s; want running", got)
	}
	if after.Job(2) == nil || after.Node("n1") == nil {
		t.Error("new snapshot misses job 2 or node n1")
	}
	if after.Index != 2 || s.Index() != 2 {
		t.Errorf("Index: snapshot %d, store %d; want 2", after.Index, s.Index())
	}
}

func TestChangedClosesOnEveryWriteOnly(t *testing.T) {
	s := state.New()
	ch := s.Changed()
	if closed(ch) {
		t.Fatal("Changed() closed before any write")
	}
	bad := errors.New("refused")
	if err := s.Write(1, func(tx *state.WriteTxn) error {
		tx.PutJob(testkit.Job(1).Build())
		return bad
	}); !errors.Is(err, bad) {
		t.Fatalf("Write returned %v; want the function's error", err)
	}
	if closed(ch) {
		t.Error("Changed() closed by a write whose function failed")
	}
	if s.Snapshot().Job(1) != nil || s.Index() != 0 {
		t.Error("a failed write left its job behind or moved the index")
	}

	write(t, s, 2, func(tx *state.WriteTxn) { tx.PutJob(testkit.Job(1).Build()) })
	if !closed(ch) {
		t.Fatal("Changed() not closed by a write")
	}
	next := s.Changed()
	if closed(next) {
		t.Error("the channel after a write is already closed")
	}
	write(t, s, 3, func(*state.WriteTxn) {})
	if !closed(next) {
		t.Error("Changed() not closed by an empty write (index moved)")
	}
}

func TestJobWatchFiresOnlyForItsJob(t *testing.T) {
	s := state.New()
	write(t, s, 1, func(tx *state.WriteTxn) {
		tx.PutJob(testkit.Job(1).Build())
		tx.PutJob(testkit.Job(2).Build())
	})
	j, watch1 := s.Snapshot().JobWatch(1)
	if j == nil || j.ID != 1 {
		t.Fatalf("JobWatch(1) = %v", j)
	}
	missing, watchMissing := s.Snapshot().JobWatch(99)
	if missing != nil || watchMissing == nil {
		t.Fatalf("JobWatch(99) = %v, %v; want nil job and a channel", missing, watchMissing)
	}

	write(t, s, 2, func(tx *state.WriteTxn) {
		j := tx.Job(2).Copy()
		j.Priority = 7
		tx.PutJob(j)
		tx.PutAlloc(testkit.Alloc(2, 0, "n1").Build())
	})
	if closed(watch1) {
		t.Error("watch on job 1 fired when only job 2 changed")
	}

	write(t, s, 3, func(tx *state.WriteTxn) {
		j := tx.Job(1).Copy()
		j.State = model.JobCancelled
		tx.PutJob(j)
	})
	if !closed(watch1) {
		t.Error("watch on job 1 did not fire when job 1 changed")
	}
	if got := s.Snapshot().Job(1).ModifyIndex; got != 3 {
		t.Errorf("job 1 ModifyIndex = %d; want 3 (the index of the write)", got)
	}

	write(t, s, 4, func(tx *state.WriteTxn) { tx.PutJob(testkit.Job(99).Build()) })
	if !closed(watchMissing) {
		t.Error("watch on a missing job did not fire when it was created")
	}
}

func TestReads(t *testing.T) {
	s := state.New()
	// IDs chosen so that byte order of a varint or decimal string would
	// differ from numeric order.
	write(t, s, 5, func(tx *state.WriteTxn) {
		tx.PutQueue(testkit.Queue("default"))
		tx.PutQueue(testkit.Queue("batch"))
		tx.PutNode(testkit.Node("n2").Build())
		tx.PutNode(testkit.Node("n1").Build())
		for _, id := range []model.JobID{2, 256, 10, 1} {
			tx.PutJob(testkit.Job(id).Build())
		}
		running := testkit.Job(300).State(model.JobRunning).Build()
		running.Owner, running.IdempotencyKey = "ada", "k1"
		tx.PutJob(running)
		tx.PutAlloc(testkit.Alloc(300, 1, "n1").Build())
		tx.PutAlloc(testkit.Alloc(300, 0, "n2").Build())
		tx.PutAlloc(testkit.Alloc(10, 0, "n1").Status(model.AllocExited).Build())
	})
	snap := s.Snapshot()

	var newestFirst []model.JobID
	snap.Jobs(func(j *model.Job) bool { newestFirst = append(newestFirst, j.ID); return true })
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"Jobs newest first", newestFirst, []model.JobID{300, 256, 10, 2, 1}},
		{"JobsInState pending ascending", jobIDs(snap.JobsInState(model.JobPending)), []model.JobID{1, 2, 10, 256}},
		{"JobsInState running", jobIDs(snap.JobsInState(model.JobRunning)), []model.JobID{300}},
		{"JobsInState failed", jobIDs(snap.JobsInState(model.JobFailed)), []model.JobID(nil)},
		{"AllocsByJob", allocIDs(snap.AllocsByJob(300)), []string{"300.0.1", "300.1.1"}},
		{"AllocsByJob of another job", allocIDs(snap.AllocsByJob(10)), []string{"10.0.1"}},
		{"LiveAllocs skips exited", allocIDs(snap.LiveAllocs()), []string{"300.0.1", "300.1.1"}},
		{"Nodes by name", []string{snap.Nodes()[0].Name, snap.Nodes()[1].Name}, []string{"n1", "n2"}},
		{"Queues by name", []string{snap.Queues()[0].Name, snap.Queues()[1].Name}, []string{"batch", "default"}},
		{"LastJobID", snap.LastJobID(), model.JobID(300)},
		{"JobByIdempotencyKey", snap.JobByIdempotencyKey("ada", "k1").ID, model.JobID(300)},
		{"JobByIdempotencyKey other owner", snap.JobByIdempotencyKey("bob", "k1") == nil, true},
		{"JobByIdempotencyKey empty key", snap.JobByIdempotencyKey("tester", "") == nil, true},
	}
	for _, tc := range tests {
		if diff := gocmp.Diff(tc.want, tc.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	onN1 := snap.AllocsByNode("n1")
	if diff := gocmp.Diff([]string{"10.0.1", "300.1.1"}, allocIDs(onN1)); diff != "" {
		t.Errorf("AllocsByNode(n1) (-want +got):\n%s", diff)
	}

	// Stopping early stops.
	var first []model.JobID
	snap.Jobs(func(j *model.Job) bool { first = append(first, j.ID); return len(first) < 2 })
	if diff := gocmp.Diff([]model.JobID{300, 256}, first); diff != "" {
		t.Errorf("Jobs stopping after 2 (-want +got):\n%s", diff)
	}
}

// TestIdempotencyKeyFollowsTheJob: the key finds the job's newest version
// after updates that keep the key, finds nothing once the job is deleted,
// and follows a job whose key changed (an operator's rewrite).
func TestIdempotencyKeyFollowsTheJob(t *testing.T) {
	s := state.New()
	keyed := func(id model.JobID, owner, key string, st model.JobState) *model.Job {
		j := testkit.Job(id).State(st).Build()
		j.Owner, j.IdempotencyKey = owner, key
		return j
	}
	write(t, s, 1, func(tx *state.WriteTxn) {
		tx.PutJob(keyed(1, "ada", "k1", model.JobPending))
		tx.PutJob(keyed(2, "ada", "k2", model.JobPending))
		tx.PutJob(keyed(3, "bob", "k1", model.JobPending))
	})
	write(t, s, 2, func(tx *state.WriteTxn) { tx.PutJob(keyed(1, "ada", "k1", model.JobRunning)) })
	if j := s.Snapshot().JobByIdempotencyKey("ada", "k1"); j == nil || j.ID != 1 || j.State != model.JobRunning {
		t.Fatalf("after an update, ada's k1 finds %+v; want job 1 running", j)
	}
	write(t, s, 3, func(tx *state.WriteTxn) { tx.PutJob(keyed(2, "ada", "k9", model.JobPending)) })
	snap := s.Snapshot()
	if j := snap.JobByIdempotencyKey("ada", "k2"); j != nil {
		t.Errorf("the replaced key k2 still finds job %d", j.ID)
	}
	if j := snap.JobByIdempotencyKey("ada", "k9"); j == nil || j.ID != 2 {
		t.Errorf("the new key k9 finds %+v; want job 2", j)
	}
	write(t, s, 4, func(tx *state.WriteTxn) { tx.DeleteJob(1) })
	snap = s.Snapshot()
	if j := snap.JobByIdempotencyKey("ada", "k1"); j != nil {
		t.Errorf("a deleted job's key still finds job %d", j.ID)
	}
	if j := snap.JobByIdempotencyKey("bob", "k1"); j == nil || j.ID != 3 {
		t.Errorf("bob's k1 finds %+v; want job 3 (keys are per owner)", j)
	}
}

func TestDeleteJobKeepsLastJobIDAndRemovesAllocs(t *testing.T) {
	s := state.New()
	write(t, s, 1, func(tx *state.WriteTxn) {
		tx.PutJob(testkit.Job(7).State(model.JobSucceeded).Build())
		tx.PutAlloc(testkit.Alloc(7, 0, "n1").Status(model.AllocExited).Build())
		tx.PutAlloc(testkit.Alloc(7, 0, "n1").Attempt(2).Status(model.AllocExited).Build())
		tx.PutJob(testkit.Job(3).Build())
	})
	write(t, s, 2, func(tx *state.WriteTxn) { tx.DeleteJob(7) })
	snap := s.Snapshot()
	if snap.Job(7) != nil || len(snap.AllocsByJob(7)) != 0 {
		t.Error("DeleteJob left the job or its allocations")
	}
	if snap.Job(3) == nil {
		t.Error("DeleteJob(7) removed job 3")
	}
	if got := snap.LastJobID(); got != 7 {
		t.Errorf("LastJobID after deleting the newest job = %d; want 7 (IDs are never reused)", got)
	}
	onN1 := snap.AllocsByNode("n1")
	if len(onN1) != 0 {
		t.Errorf("node index still lists %v", allocIDs(onN1))
	}
}

func TestLiveAllocsByNode(t *testing.T) {
	s := state.New()
	write(t, s, 1, func(tx *state.WriteTxn) {
		tx.PutAlloc(testkit.Alloc(1, 0, "n1").Build())
		tx.PutAlloc(testkit.Alloc(2, 0, "n1").Status(model.AllocExited).Build())
		tx.PutAlloc(testkit.Alloc(3, 0, "n10").Build()) // a name n1 is a prefix of
	})
	write(t, s, 2, func(tx *state.WriteTxn) {
		tx.PutAlloc(testkit.Alloc(4, 0, "n1").Status(model.AllocAssigned).Build())
	})
	snap := s.Snapshot()
	live, modified, watch := snap.LiveAllocsByNode("n1")
	if diff := gocmp.Diff([]string{"1.0.1", "4.0.1"}, allocIDs(live)); diff != "" {
		t.Errorf("live on n1 (-want +got):\n%s", diff)
	}
	if modified != 2 {
		t.Errorf("modified = %d; want 2 (the newest change on n1)", modified)
	}
	_, _, watchN10 := snap.LiveAllocsByNode("n10")
	if none, m, _ := snap.LiveAllocsByNode("n9"); len(none) != 0 || m != 0 {
		t.Errorf("unknown node: %v, modified %d; want none and 0", allocIDs(none), m)
	}

	// A live allocation ending leaves the live list, but its change still
	// counts: a watcher learns that it is gone.
	write(t, s, 3, func(tx *state.WriteTxn) {
		a := tx.Alloc("1.0.1").Copy()
		a.Status = model.AllocLost
		tx.PutAlloc(a)
	})
	if !closed(watch) {
		t.Error("watch on n1 did not fire when an allocation there ended")
	}
	if closed(watchN10) {
		t.Error("watch on n10 fired for a change on n1")
	}
	live, modified, _ = s.Snapshot().LiveAllocsByNode("n1")
	if diff := gocmp.Diff([]string{"4.0.1"}, allocIDs(live)); diff != "" || modified != 3 {
		t.Errorf("after the end: live %v, modified %d; want [4.0.1] and 3", allocIDs(live), modified)
	}

	// Restoring from a snapshot rebuilds the indexes.
	restored := persisted(t, s)
	live, modified, _ = restored.Snapshot().LiveAllocsByNode("n1")
	if diff := gocmp.Diff([]string{"4.0.1"}, allocIDs(live)); diff != "" || modified != 3 {
		t.Errorf("restored: live %v, modified %d; want [4.0.1] and 3", allocIDs(live), modified)
	}
}

func TestFinishedJobsNewestFirst(t *testing.T) {
	s := state.New()
	write(t, s, 1, func(tx *state.WriteTxn) {
		for _, id := range []model.JobID{1, 2, 256, 3, 300} {
			st := model.JobSucceeded
			switch id {
			case 2:
				st = model.JobPending
			case 3:
				st = model.JobRunning
			case 300:
				st = model.JobCancelled
			}
			tx.PutJob(testkit.Job(id).State(st).Build())
		}
	})
	var got []model.JobID
	s.Snapshot().FinishedJobs(func(j *model.Job) bool { got = append(got, j.ID); return true })
	if diff := gocmp.Diff([]model.JobID{300, 256, 1}, got); diff != "" {
		t.Errorf("finished jobs (-want +got):\n%s", diff)
	}
	// A job that finishes joins; fn returning false stops the walk.
	write(t, s, 2, func(tx *state.WriteTxn) {
		j := tx.Job(3).Copy()
		j.State = model.JobFailed
		tx.PutJob(j)
	})
	got = nil
	s.Snapshot().FinishedJobs(func(j *model.Job) bool { got = append(got, j.ID); return len(got) < 3 })
	if diff := gocmp.Diff([]model.JobID{300, 256, 3}, got); diff != "" {
		t.Errorf("first three finished jobs (-want +got):\n%s", diff)
	}
}

func TestAllocChangesOnNode(t *testing.T) {
	s := state.New()
	write(t, s, 1, func(tx *state.WriteTxn) {
		tx.PutAlloc(testkit.Alloc(1, 0, "n1").Build())
		tx.PutAlloc(testkit.Alloc(2, 0, "n1").Build())
		tx.PutAlloc(testkit.Alloc(9, 0, "n10").Build())
	})
	write(t, s, 2, func(tx *state.WriteTxn) {
		tx.PutAlloc(testkit.Alloc(3, 0, "n1").Status(model.AllocAssigned).Build())
	})
	write(t, s, 3, func(tx *state.WriteTxn) {
		a := tx.Alloc("1.0.1").Copy()
		a.Status = model.AllocExited
		tx.PutAlloc(a)
		tx.PutAlloc(testkit.Alloc(9, 1, "n10").Build())
	})
	snap := s.Snapshot()
	for _, tt := range []struct {
		after        uint64
		want         []string
		wantModified uint64
	}{
		{0, []string{"2.0.1", "3.0.1", "1.0.1"}, 3}, // oldest change first; ended ones too
		{1, []string{"3.0.1", "1.0.1"}, 3},
		{2, []string{"1.0.1"}, 3},
		{3, nil, 3},
	} {
		got, modified, _ := snap.AllocChangesOnNode("n1", tt.after)
		if diff := gocmp.Diff(tt.want, allocIDs(got)); diff != "" || modified != tt.wantModified {
			t.Errorf("changes after %d: modified %d (want %d), allocations (-want +got):\n%s", tt.after, modified, tt.wantModified, diff)
		}
	}
	_, _, watch := snap.AllocChangesOnNode("n1", 3)
	write(t, s, 4, func(tx *state.WriteTxn) { tx.PutAlloc(testkit.Alloc(9, 2, "n10").Build()) })
	if closed(watch) {
		t.Error("watch on n1 fired for a change on n10")
	}
	write(t, s, 5, func(tx *state.WriteTxn) { tx.DeleteJob(1) })
	if !closed(watch) {
		t.Error("watch on n1 did not fire when an allocation there was deleted")
	}
}

// TestJobChangeFeed: SnapshotWithJobChanges names every job written or
// deleted since the reader's last call, and says so when it cannot (the
// reader fell behind the feed, the state was restored).
func TestJobChangeFeed(t *testing.T) {
	s := state.New()
	state.SetFeedLen(s, 4)
	if _, _, _, ok := s.SnapshotWithJobChanges(0); ok {
		t.Fatal("a first read must be told to read everything")
	}
	_, _, seq, _ := s.SnapshotWithJobChanges(0)
	write(t, s, 1, func(tx *state.WriteTxn) { tx.PutJob(&model.Job{ID: 1, State: model.JobPending}) })
	write(t, s, 2, func(tx *state.WriteTxn) { tx.PutNode(&model.Node{Name: "n"}) })
	write(t, s, 3, func(tx *state.WriteTxn) {
		tx.PutJob(&model.Job{ID: 2, State: model.JobPending})
		tx.PutJob(&model.Job{ID: 3, State: model.JobPending})
	})
	snap, changed, seq2, ok := s.SnapshotWithJobChanges(seq)
	if !ok || gocmp.Diff([]model.JobID{1, 2, 3}, changed) != "" || snap.Job(3) == nil {
		t.Fatalf("changes after the first read: %v, ok %v", changed, ok)
	}
	write(t, s, 4, func(tx *state.WriteTxn) { tx.DeleteJob(2) })
	_, changed, seq3, ok := s.SnapshotWithJobChanges(seq2)
	if !ok || gocmp.Diff([]model.JobID{2}, changed) != "" {
		t.Fatalf("a deletion: %v, ok %v", changed, ok)
	}
	if _, changed, _, ok := s.SnapshotWithJobChanges(seq3); !ok || len(changed) != 0 {
		t.Fatalf("nothing written: %v, ok %v", changed, ok)
	}
	// Five more job writes: the feed (4 long) drops the oldest half, and a
	// reader from before them must read everything.
	for i := range 5 {
		write(t, s, uint64(5+i), func(tx *state.WriteTxn) { tx.PutJob(&model.Job{ID: model.JobID(10 + i), State: model.JobPending}) })
	}
	if _, _, _, ok := s.SnapshotWithJobChanges(seq3); ok {
		t.Fatal("a reader behind the feed must be told to read everything")
	}
	_, _, seq4, _ := s.SnapshotWithJobChanges(seq3)
	var buf bytes.Buffer
	if err := s.Snapshot().Persist(&buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := s.SnapshotWithJobChanges(seq4); ok {
		t.Fatal("after a restore a reader must read everything")
	}
}

func TestJobsInStateNewest(t *testing.T) {
	s := state.New()
	write(t, s, 1, func(tx *state.WriteTxn) {
		for _, id := range []model.JobID{0, 1, 5, 256, 7} {
			tx.PutJob(testkit.Job(id).Build())
		}
		tx.PutJob(testkit.Job(6).State(model.JobRunning).Build())
		tx.PutJob(testkit.Job(300).State(model.JobRunning).Build())
	})
	next := s.Snapshot().JobsInStateNewest(model.JobPending)
	var got []model.JobID
	for j := next(); j != nil; j = next() {
		got = append(got, j.ID)
	}
	if diff := gocmp.Diff([]model.JobID{256, 7, 5, 1, 0}, got); diff != "" {
		t.Errorf("pending newest first (-want +got):\n%s", diff)
	}
	if next() != nil {
		t.Error("the iterator returned a job after its end")
	}
	if j := s.Snapshot().JobsInStateNewest(model.JobFailed)(); j != nil {
		t.Errorf("no failed jobs, got %d", j.ID)
	}
}

// TestWatchAfterAStaleRead: a change that lands between a reader's
// snapshot and its asking for a watch is not missed: the watch comes back
// already closed, and the reader reads again.
func TestWatchAfterAStaleRead(t *testing.T) {
	s := state.New()
	write(t, s, 1, func(tx *state.WriteTxn) {
		tx.PutJob(testkit.Job(1).Build())
		tx.PutAlloc(testkit.Alloc(1, 0, "n1").Build())
	})
	snap := s.Snapshot()
	write(t, s, 2, func(tx *state.WriteTxn) {
		j := tx.Job(1).Copy()
		j.Priority = 3
		tx.PutJob(j)
		a := tx.Alloc("1.0.1").Copy()
		a.Status = model.AllocRunning
		tx.PutAllocReport(a)
	})
	if _, ch := snap.JobWatch(1); !closed(ch) {
		t.Error("JobWatch on a snapshot older than the job's change is open")
	}
	if _, _, ch := snap.AllocsByJobWatch(1); !closed(ch) {
		t.Error("AllocsByJobWatch on a snapshot older than the allocation's change is open")
	}
	if ch := snap.Jobs(func(*model.Job) bool { return false }); !closed(ch) {
		t.Error("the jobs table watch on a snapshot older than a job change is open")
	}
	// The agent's own report is nothing new for its node's watch.
	if _, _, ch := snap.AllocChangesOnNode("n1", 1); closed(ch) {
		t.Error("node watch fired for the agent's own report")
	}
	write(t, s, 3, func(tx *state.WriteTxn) {
		a := tx.Alloc("1.0.1").Copy()
		a.Desired = model.DesiredStop
		tx.PutAlloc(a)
	})
	if _, _, ch := snap.LiveAllocsByNode("n1"); !closed(ch) {
		t.Error("node watch on a snapshot older than a stop request is open")
	}
	// Current reads get open watches.
	now := s.Snapshot()
	_, jobCh := now.JobWatch(1)
	_, _, allocCh := now.AllocsByJobWatch(1)
	_, _, nodeCh := now.LiveAllocsByNode("n1")
	if closed(jobCh) || closed(allocCh) || closed(nodeCh) {
		t.Fatal("a watch on the current state is already closed")
	}
	// A restore wakes everyone.
	var buf bytes.Buffer
	if err := now.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !closed(jobCh) || !closed(allocCh) || !closed(nodeCh) {
		t.Error("Restore left a watch open")
	}
	if _, ch := now.JobWatch(1); !closed(ch) {
		t.Error("a watch on a snapshot from before a Restore is open")
	}
}

// TestReadersDuringWrites: readers walk snapshots while the writer keeps
// changing the state (run it under -race). Every snapshot a reader holds
// stays consistent: each index lists exactly the jobs the table holds, as
// of that snapshot, however many writes came after it.
func TestReadersDuringWrites(t *testing.T) {
	s := state.New()
	done := make(chan struct{})
	errs := make(chan string, 4)
	for range 3 {
		go func() {
			for {
				select {
				case <-done:
					errs <- ""
					return
				default:
				}
				snap := s.Snapshot()
				byID := map[model.JobID]*model.Job{}
				snap.Jobs(func(j *model.Job) bool { byID[j.ID] = j; return true })
				inStates := 0
				for _, st := range []model.JobState{model.JobPending, model.JobRunning, model.JobSucceeded} {
					for _, j := range snap.JobsInState(st) {
						if byID[j.ID] != j || j.State != st {
							errs <- "a state index disagrees with the jobs table in one snapshot"
							return
						}
						inStates++
					}
				}
				if inStates != len(byID) {
					errs <- "the state index and the jobs table hold different numbers of jobs"
					return
				}
				for _, a := range snap.LiveAllocs() {
					if j := byID[a.JobID]; j == nil || j.State != model.JobRunning {
						errs <- "a live allocation belongs to a job that is not running in the same snapshot"
						return
					}
				}
			}
		}()
	}
	for i := range 3000 {
		id := model.JobID(i%500 + 1)
		write(t, s, uint64(i+1), func(tx *state.WriteTxn) {
			j := tx.Job(id)
			switch {
			case j == nil || j.State == model.JobSucceeded:
				tx.DeleteJob(id)
				tx.PutJob(testkit.Job(id).Build())
			case j.State == model.JobPending:
				j = j.Copy()
				j.State = model.JobRunning
				tx.PutJob(j)
				tx.PutAlloc(testkit.Alloc(id, 0, "n1").Build())
			default:
				j = j.Copy()
				j.State = model.JobSucceeded
				tx.PutJob(j)
				a := tx.Alloc(testkit.Alloc(id, 0, "n1").Build().ID).Copy()
				a.Status = model.AllocExited
				tx.PutAllocReport(a)
			}
		})
	}
	close(done)
	for range 3 {
		if msg := <-errs; msg != "" {
			t.Fatal(msg)
		}
	}
}

// TestFinishedJobsByEnd drives jobs through random ends, rewrites of their
// end times, requeues and deletions, and checks after each write (and
// after a restore) that the end-time order lists exactly the finished
// jobs, first to end first, then by ID.
func TestFinishedJobsByEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	s := state.New()
	check := func(step int, snap *state.Snapshot) {
		t.Helper()
		var want []*model.Job
		snap.FinishedJobs(func(j *model.Job) bool { want = append(want, j); return true })
		slices.SortFunc(want, func(a, b *model.Job) int { return cmp.Or(a.EndTime.Compare(b.EndTime), cmp.Compare(a.ID, b.ID)) })
		var got []model.JobID
		snap.FinishedJobsByEnd(func(id model.JobID, end time.Time) bool {
			if j := snap.Job(id); j == nil || !j.EndTime.Equal(end) {
				t.Fatalf("step %d: job %d listed as ending at %v; the job says %v", step, id, end, j)
			}
			got = append(got, id)
			return true
		})
		if !slices.Equal(got, jobIDs(want)) || snap.FinishedJobCount() != len(want) {
			t.Fatalf("step %d: by end %v (count %d); finished jobs by end %v", step, got, snap.FinishedJobCount(), jobIDs(want))
		}
	}
	for step := range 2000 {
		id := model.JobID(1 + rng.IntN(60))
		write(t, s, uint64(step+1), func(tx *state.WriteTxn) {
			j := tx.Job(id)
			switch {
			case j == nil:
				tx.PutJob(testkit.Job(id).Build())
			case rng.IntN(10) == 0:
				tx.DeleteJob(id)
			case j.State == model.JobPending:
				j = j.Copy()
				j.State = model.JobSucceeded
				if rng.IntN(20) > 0 { // a few finished jobs have no end time
					j.EndTime = testkit.Epoch.Add(time.Duration(rng.IntN(30)) * time.Second) // ties
				}
				tx.PutJob(j)
			case rng.IntN(3) == 0: // requeued
				j = j.Copy()
				j.State, j.EndTime = model.JobPending, time.Time{}
				tx.PutJob(j)
			default: // rewritten: the same end time, or a new one
				j = j.Copy()
				if rng.IntN(2) == 0 {
					j.EndTime = j.EndTime.Add(time.Duration(rng.IntN(5)-2) * time.Second)
				}
				tx.PutJob(j)
			}
		})
		check(step, s.Snapshot())
	}
	check(-1, persisted(t, s).Snapshot())
}
