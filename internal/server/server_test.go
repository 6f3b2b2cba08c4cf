package server_test

import (
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/server"
	"github.com/durehq/dure/internal/state"
	"github.com/durehq/dure/internal/testkit"
)

// view is everything the API can show about the cluster.
type view struct {
	Index     uint64
	LastJobID model.JobID
	Jobs      []*model.Job
	Allocs    []*model.Allocation
	Nodes     []*model.Node
	Queues    []*model.Queue
}

func viewOf(s *state.Store) view {
	snap := s.Snapshot()
	v := view{Index: snap.Index, LastJobID: snap.LastJobID(), Nodes: snap.Nodes(), Queues: snap.Queues()}
	snap.Jobs(func(j *model.Job) bool {
		v.Jobs = append(v.Jobs, j)
		v.Allocs = append(v.Allocs, snap.AllocsByJob(j.ID)...)
		return true
	})
	return v
}

func TestRestartRecoversEverything(t *testing.T) {
	dir := t.TempDir()
	s1 := start(t, config(t, dir))
	register(t, s1, "n1", 4)
	register(t, s1, "n2", 4)
	if err := s1.DrainNode(ctx(t), "n2", true, "disk swap"); err != nil {
		t.Fatal(err)
	}
	running := submit(t, s1, 2, 0)
	waitFor(t, "job 1 to be placed", func() bool { return jobState(s1, running) == model.JobRunning })
	var ups []fsm.AllocUpdate
	for _, a := range s1.Store().Snapshot().AllocsByJob(running) {
		ups = append(ups, fsm.AllocUpdate{AllocID: a.ID, Node: a.Node, Status: model.AllocRunning, StartedAt: testkit.Epoch})
	}
	if err := s1.UpdateAllocs(ctx(t), ups); err != nil {
		t.Fatal(err)
	}
	cancelled := submit(t, s1, 1, 0)
	waitFor(t, "job 2 to be placed", func() bool { return jobState(s1, cancelled) == model.JobRunning })
	if err := s1.CancelJob(ctx(t), cancelled, "test"); err != nil {
		t.Fatal(err)
	}
	big := testkit.Job(0).CPU(64).Build()
	blocked, err := s1.SubmitJob(ctx(t), *big)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a pending reason for job 3", func() bool {
		j := s1.Store().Snapshot().Job(blocked)
		return j.Reason.Code != model.ReasonNewJob
	})
	if err := s1.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	before := viewOf(s1.Store())

	// A new raft address: a single voter is found by its ID, not its address.
	s2 := start(t, config(t, dir))
	after := viewOf(s2.Store())
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("state after restart differs (-before +after):\n%s", diff)
	}
	if got := jobState(s2, blocked); got != model.JobPending {
		t.Errorf("job %d after restart is %s; want pending", blocked, got)
	}

	next := submit(t, s2, 1, 0)
	if next != blocked+1 {
		t.Errorf("first job after restart got ID %d; want %d (IDs continue, never reused)", next, blocked+1)
	}
	waitFor(t, "the new job to run", func() bool { return jobState(s2, next) == model.JobRunning })
}

// A leader that commits a change and dies before its scheduler reacts
// leaves pending work that no later write mentions. The next leader must
// still schedule it. The test writes such a log: a job pending because its
// only node is drained, then an undrain entry appended to the stopped
// server's log as if the crashed leader had just committed it.
func TestNewLeaderSchedulesInheritedPendingJobs(t *testing.T) {
	dir := t.TempDir()
	cfg := config(t, dir)
	s1 := start(t, cfg)
	register(t, s1, "n1", 4)
	if err := s1.DrainNode(ctx(t), "n1", true, "hold"); err != nil {
		t.Fatal(err)
	}
	id := submit(t, s1, 1, 0)
	waitFor(t, "a pending reason", func() bool {
		return s1.Store().Snapshot().Job(id).Reason.Code != model.ReasonNewJob
	})
	if err := s1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	appendToLog(t, dir, &fsm.DrainNode{Time: testkit.Epoch, Name: "n1", Drain: false})

	s2 := start(t, config(t, dir))
	if n := s2.Store().Snapshot().Node("n1"); n.Drain {
		t.Fatal("the appended undrain entry was not applied")
	}
	waitFor(t, "the inherited pending job to be placed", func() bool { return jobState(s2, id) == model.JobRunning })
}

// appendToLog adds one committed-looking command entry to a stopped
// server's raft log (raft/raft.db in its data directory).
func appendToLog(t *testing.T, dir string, cmd fsm.Command) {
	t.Helper()
	b, err := fsm.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft", "raft.db")})
	if err != nil {
		t.Fatalf("open raft log: %v", err)
	}
	defer store.Close()
	last, err := store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var prev raft.Log
	if err := store.GetLog(last, &prev); err != nil {
		t.Fatal(err)
	}
	next := raft.Log{Index: last + 1, Term: prev.Term, Type: raft.LogCommand, Data: b}
	if err := store.StoreLog(&next); err != nil {
		t.Fatalf("append to raft log: %v", err)
	}
}

func TestConcurrentSubmissionsAllSucceed(t *testing.T) {
	s := start(t, config(t, t.TempDir()))
	const workers, each = 4, 25
	var mu sync.Mutex
	var ids []model.JobID
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				id, err := s.SubmitJob(ctx(t), *testkit.Job(0).Build())
				mu.Lock()
				ids, errs = append(ids, id), append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("a concurrent submission failed: %v", err)
		}
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for i, id := range ids {
		if id != model.JobID(i+1) {
			t.Fatalf("IDs of %d submissions are not 1..%d: %v", len(ids), len(ids), ids)
		}
	}

	// A retried submission with an idempotency key gets the first job back
	// and does not use up an ID.
	keyed := testkit.Job(0).Owner("ada").Build()
	keyed.IdempotencyKey = "k"
	var got []model.JobID
	for range 2 {
		id, err := s.SubmitJob(ctx(t), *keyed)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	got = append(got, submit(t, s, 1, 0))
	if diff := cmp.Diff([]model.JobID{101, 101, 102}, got); diff != "" {
		t.Errorf("IDs of keyed, keyed again, plain (-want +got):\n%s", diff)
	}
}

// agent heartbeats for a node until stopped, as a real agent would.
func agent(t *testing.T, s *server.Server, name string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_, _ = s.Heartbeat(name, "sess-"+name)
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func TestSilentNodeGoesDownAndItsWorkIsRetried(t *testing.T) {
	cfg := config(t, t.TempDir())
	cfg.HeartbeatInterval, cfg.HeartbeatTimeout = 50*time.Millisecond, 200*time.Millisecond
	s := start(t, cfg)
	register(t, s, "n1", 4)
	stopN1 := agent(t, s, "n1")
	id := submit(t, s, 1, 1)
	waitFor(t, "the job to run on n1", func() bool { return jobState(s, id) == model.JobRunning })
	if err := s.UpdateAllocs(ctx(t), []fsm.AllocUpdate{{AllocID: "1.0.1", Node: "n1", Status: model.AllocRunning, StartedAt: testkit.Epoch}}); err != nil {
		t.Fatal(err)
	}
	register(t, s, "n2", 4)
	stopN2 := agent(t, s, "n2")

	stopN1()
	waitFor(t, "n1 to be declared down", func() bool {
		return s.Store().Snapshot().Node("n1").Status == model.NodeDown
	})
	snap := s.Store().Snapshot()
	if n := snap.Node("n1"); !strings.Contains(n.StatusReason, "no heartbeat for") {
		t.Errorf("n1 status reason %q; want it to say no heartbeat arrived", n.StatusReason)
	}
	if a := snap.Alloc("1.0.1"); a.Status != model.AllocLost {
		t.Errorf("the task on n1 is %s; want lost", a.Status)
	}
	if n := snap.Node("n2"); n.Status != model.NodeReady {
		t.Errorf("n2, which heartbeats, is %s", n.Status)
	}

	waitFor(t, "attempt 2 on n2", func() bool {
		j := s.Store().Snapshot().Job(id)
		return j.State == model.JobRunning && j.Attempt == 2
	})
	if a := s.Store().Snapshot().Alloc("1.0.2"); a == nil || a.Node != "n2" {
		t.Fatalf("attempt 2's allocation: %+v; want 1.0.2 on n2", a)
	}

	stopN2()
	waitFor(t, "the job to fail", func() bool { return jobState(s, id) == model.JobFailed })
	j := s.Store().Snapshot().Job(id)
	if j.Reason.Code != model.ReasonNodeLost || !strings.Contains(j.Reason.Message, "no retries left of 1") {
		t.Errorf("failure reason %+v; want NodeLost saying no retries are left", j.Reason)
	}
	var types []string
	for _, e := range j.Events {
		types = append(types, e.Type)
	}
	if diff := cmp.Diff([]string{"submitted", "placed", "requeued", "placed", "failed"}, types); diff != "" {
		t.Errorf("job history (-want +got):\n%s", diff)
	}
}

func TestRecoveryFromSnapshotAndTruncatedLog(t *testing.T) {
	dir := t.TempDir()
	cfg := config(t, dir)
	cfg.SnapshotThreshold, cfg.SnapshotInterval, cfg.TrailingLogs = 4, 20*time.Millisecond, 2
	s1 := start(t, cfg)
	register(t, s1, "n1", 2)
	const jobs = 20
	for range jobs {
		submit(t, s1, 1, 0)
	}
	snaps := filepath.Join(dir, "raft", "snapshots")
	waitFor(t, "a raft snapshot", func() bool {
		m, _ := filepath.Glob(filepath.Join(snaps, "*", "state.bin"))
		return len(m) > 0
	})
	// Let the scheduler settle (two jobs run, the rest have their reason)
	// so that the restarted server has nothing to add.
	waitFor(t, "the scheduler to settle", func() bool {
		snap := s1.Store().Snapshot()
		for _, j := range snap.JobsInState(model.JobPending) {
			if j.Reason.Code == model.ReasonNewJob {
				return false
			}
		}
		return len(snap.JobsInState(model.JobRunning)) == 2
	})
	if err := s1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	before := viewOf(s1.Store())

	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft", "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	first, err := store.FirstIndex()
	store.Close()
	if err != nil || first <= 1 {
		t.Fatalf("raft log starts at %d (%v); want it truncated behind the snapshot", first, err)
	}

	cfg.RaftBind = freeAddr(t)
	s2 := start(t, cfg)
	after := viewOf(s2.Store())
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("state after recovery from snapshot (-before +after):\n%s", diff)
	}
	if got := submit(t, s2, 1, 0); got != jobs+1 {
		t.Errorf("next job ID %d; want %d", got, jobs+1)
	}
}

func TestWritesNeedALeader(t *testing.T) {
	cfg := config(t, t.TempDir())
	cfg.Bootstrap = false // a fresh server that was never told it is a cluster
	w := &testLog{t: t}
	t.Cleanup(w.stop)
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	if s.IsLeader() {
		t.Fatal("an unbootstrapped server leads")
	}
	writes := map[string]error{
		"SubmitJob":    func() error { _, err := s.SubmitJob(ctx(t), *testkit.Job(0).Build()); return err }(),
		"CancelJob":    s.CancelJob(ctx(t), 1, ""),
		"DrainNode":    s.DrainNode(ctx(t), "n1", true, ""),
		"RegisterNode": s.RegisterNode(ctx(t), *testkit.Node("n1").Build()),
		"UpdateAllocs": s.UpdateAllocs(ctx(t), nil),
		"Heartbeat":    func() error { _, err := s.Heartbeat("n1", "s"); return err }(),
	}
	for name, err := range writes {
		if !errors.Is(err, server.ErrNotLeader) {
			t.Errorf("%s on a non-leader: %v; want ErrNotLeader", name, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  server.Config
		want string
	}{
		{"no data directory", server.Config{Name: "s"}, "DataDir is required"},
		{"timeout too short", server.Config{Name: "s", DataDir: t.TempDir(), HeartbeatInterval: time.Second, HeartbeatTimeout: time.Second},
			"heartbeat timeout 1s must be at least twice the interval 1s"},
		{"bad advertise address", server.Config{Name: "s", DataDir: t.TempDir(), RaftBind: "127.0.0.1:0", RaftAdvertise: "not an address"},
			`raft advertise address "not an address"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := server.New(tc.cfg)
			if err == nil {
				_ = s.Shutdown()
				t.Fatal("server.New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want it to contain %q", err, tc.want)
			}
		})
	}
}

// clock is a settable time source for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// clockedConfig is a test server's config whose time is a settable clock,
// starting at testkit.Epoch.
func clockedConfig(t *testing.T) (*clock, server.Config) {
	clk := &clock{now: testkit.Epoch}
	cfg := config(t, t.TempDir())
	cfg.Now = clk.Now
	return clk, cfg
}

// jobExists reports whether the server still keeps job id.
func jobExists(s *server.Server, id model.JobID) bool { return s.Store().Snapshot().Job(id) != nil }

func TestFinishedJobsArePruned(t *testing.T) {
	clk, cfg := clockedConfig(t)
	cfg.JobRetention, cfg.MaxFinishedJobs, cfg.PruneInterval = time.Hour, 2, 20*time.Millisecond
	cfg.HeartbeatTimeout = 100 * time.Hour // the clock jumps; n1 must not be declared down
	s := start(t, cfg)
	var cancelled []model.JobID
	for range 3 {
		id := submit(t, s, 1, 0)
		if err := s.CancelJob(ctx(t), id, ""); err != nil {
			t.Fatal(err)
		}
		cancelled = append(cancelled, id)
	}
	register(t, s, "n1", 4)
	stopping := submit(t, s, 1, 0)
	waitFor(t, "job 4 to run", func() bool { return jobState(s, stopping) == model.JobRunning })
	if err := s.CancelJob(ctx(t), stopping, ""); err != nil {
		t.Fatal(err)
	}

	// Over the cap of 2 finished jobs: the oldest go.
	waitFor(t, "jobs 1 and 2 to be pruned", func() bool { return !jobExists(s, cancelled[0]) && !jobExists(s, cancelled[1]) })
	if !jobExists(s, cancelled[2]) || !jobExists(s, stopping) {
		t.Fatal("the two newest finished jobs were pruned despite the cap of 2")
	}

	// Past the retention: job 3 goes; job 4 stays while its task stops.
	clk.Advance(2 * time.Hour)
	waitFor(t, "job 3 to be pruned", func() bool { return !jobExists(s, cancelled[2]) })
	if !jobExists(s, stopping) {
		t.Fatal("a cancelled job was pruned while its task was still stopping")
	}
	if err := s.UpdateAllocs(ctx(t), []fsm.AllocUpdate{{AllocID: "4.0.1", Node: "n1", Status: model.AllocExited, ExitCode: 143}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "job 4 to be pruned once its task stopped", func() bool { return !jobExists(s, stopping) })
	if got := s.Store().Snapshot().LastJobID(); got != stopping {
		t.Errorf("LastJobID after pruning everything = %d; want %d", got, stopping)
	}
}

// Draining a drained node again without a reason keeps its reason; a new
// reason replaces it.
func TestDrainAgainKeepsTheReason(t *testing.T) {
	s := start(t, config(t, t.TempDir()))
	register(t, s, "n1", 4)
	reason := func() string { return s.Store().Snapshot().Node("n1").DrainReason }
	for _, step := range []struct{ reason, want string }{
		{"disk swap", "disk swap"},
		{"", "disk swap"},
		{"new disk", "new disk"},
	} {
		if err := s.DrainNode(ctx(t), "n1", true, step.reason); err != nil {
			t.Fatal(err)
		}
		if got := reason(); got != step.want {
			t.Errorf("after drain --reason %q the reason is %q, want %q", step.reason, got, step.want)
		}
	}
	if err := s.DrainNode(ctx(t), "n1", false, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.DrainNode(ctx(t), "n1", true, ""); err != nil {
		t.Fatal(err)
	}
	if got := reason(); got != "" {
		t.Errorf("a drain without a reason after an undrain has reason %q, want none", got)
	}
}

// The cap on finished jobs keeps the jobs that finished last, not the
// newest IDs: a long job that has just ended must not vanish before jobs
// submitted after it that ended long ago.
func TestPruneCapKeepsTheLatestToFinish(t *testing.T) {
	clk, cfg := clockedConfig(t)
	cfg.JobRetention, cfg.MaxFinishedJobs, cfg.PruneInterval = 100*time.Hour, 2, 20*time.Millisecond
	s := start(t, cfg)
	long := submit(t, s, 1, 0) // no node: it waits, as a long job would run
	var short []model.JobID
	for range 3 {
		id := submit(t, s, 1, 0)
		if err := s.CancelJob(ctx(t), id, ""); err != nil {
			t.Fatal(err)
		}
		short = append(short, id)
	}
	waitFor(t, "the first short job to be pruned", func() bool { return !jobExists(s, short[0]) })

	clk.Advance(time.Hour)
	if err := s.CancelJob(ctx(t), long, ""); err != nil { // it ends last
		t.Fatal(err)
	}
	waitFor(t, "two finished jobs to be left", func() bool {
		n := 0
		for _, id := range append([]model.JobID{long}, short...) {
			if jobExists(s, id) {
				n++
			}
		}
		return n == 2
	})
	if !jobExists(s, long) || !jobExists(s, short[2]) {
		t.Errorf("left: job %d %v, job %d %v, job %d %v; want the job that ended last (%d) and the newest short one (%d)",
			long, jobExists(s, long), short[1], jobExists(s, short[1]), short[2], jobExists(s, short[2]), long, short[2])
	}
}

// Time alone changes a plan: once the running job outlives the walltime
// the scheduler planned with, the reserved job's estimated start moves,
// although nothing was written that would wake the scheduler.
func TestSchedulerLooksAgainWhenTimePasses(t *testing.T) {
	clk, cfg := clockedConfig(t)
	cfg.SchedRecheck = 50 * time.Millisecond
	cfg.HeartbeatTimeout = 100 * time.Hour // the clock jumps; n1 must not be declared down
	s := start(t, cfg)
	register(t, s, "n1", 1)
	submitOne := func() model.JobID {
		id, err := s.SubmitJob(ctx(t), *testkit.Job(0).Tasks(1).Walltime(time.Hour).Build())
		if err != nil {
			t.Fatalf("SubmitJob: %v", err)
		}
		return id
	}
	running := submitOne()
	waitFor(t, "the first job to be placed", func() bool { return jobState(s, running) == model.JobRunning })
	waiting := submitOne()
	var before model.Reason
	waitFor(t, "the second job's reason", func() bool {
		var ok bool
		before, ok = s.LiveReason(waiting)
		return ok && strings.Contains(before.Message, "estimated start")
	})
	clk.Advance(3 * time.Hour)
	var after model.Reason
	waitFor(t, "the estimate to move once the first job outlived its walltime", func() bool {
		after, _ = s.LiveReason(waiting)
		return after.Message != before.Message
	})
	if jobState(s, running) != model.JobRunning || jobState(s, waiting) != model.JobPending {
		t.Errorf("states %s, %s; want the first running and the second pending still", jobState(s, running), jobState(s, waiting))
	}
	t.Logf("before: %s\nafter:  %s", before.Message, after.Message)
}

// A job that sets no walltime is held to its queue's default_walltime (as
// Slurm holds it to its partition's DefaultTime); in a queue without one it
// has no limit. The agent enforces the allocation's walltime.
func TestQueueDefaultWalltimeIsTheLimitOfJobsThatSetNone(t *testing.T) {
	cfg := config(t, t.TempDir())
	cfg.Queues = []model.Queue{{Name: model.DefaultQueue}, {Name: "short", DefaultWalltime: 2 * time.Hour}}
	s := start(t, cfg)
	register(t, s, "n1", 4)
	submitTo := func(queue string, walltime time.Duration) model.JobID {
		j := testkit.Job(0).Tasks(1).Walltime(walltime).Build()
		j.Queue = queue
		id, err := s.SubmitJob(ctx(t), *j)
		if err != nil {
			t.Fatalf("SubmitJob to queue %q: %v", queue, err)
		}
		return id
	}
	tests := []struct {
		queue    string
		walltime time.Duration
		want     time.Duration
	}{
		{"short", 0, 2 * time.Hour},                   // the queue's default
		{"short", 30 * time.Minute, 30 * time.Minute}, // its own, shorter
		{"short", 5 * time.Hour, 5 * time.Hour},       // its own, longer
		{model.DefaultQueue, 0, 0},                    // a queue without a default: no limit
	}
	for _, tt := range tests {
		id := submitTo(tt.queue, tt.walltime)
		waitFor(t, "the job to be placed", func() bool { return jobState(s, id) == model.JobRunning })
		as := s.Store().Snapshot().AllocsByJob(id)
		if len(as) != 1 || as[0].Walltime != tt.want {
			t.Errorf("queue %q, walltime %s: allocations %+v; want one with walltime %s", tt.queue, tt.walltime, as, tt.want)
		}
	}
}

// Right after a restart the state is the last snapshot's until raft replays
// the rest of the log (a single server does so after electing itself); a
// read then would show ended jobs as running. CaughtUp, which the API waits
// for, closes only once the log found on disk is applied.
func TestCaughtUpAfterRestartMeansTheLogOnDiskIsApplied(t *testing.T) {
	dir := t.TempDir()
	s1 := start(t, config(t, dir))
	register(t, s1, "n1", 4)
	id := submit(t, s1, 1, 0)
	waitFor(t, "the job to be placed", func() bool { return jobState(s1, id) == model.JobRunning })
	var ups []fsm.AllocUpdate
	for _, a := range s1.Store().Snapshot().AllocsByJob(id) {
		ups = append(ups, fsm.AllocUpdate{AllocID: a.ID, Node: a.Node, Status: model.AllocExited, StartedAt: testkit.Epoch, FinishedAt: testkit.Epoch})
	}
	if err := s1.UpdateAllocs(ctx(t), ups); err != nil {
		t.Fatal(err)
	}
	if got := jobState(s1, id); got != model.JobSucceeded {
		t.Fatalf("job %d is %s before the restart; want succeeded", id, got)
	}
	if err := s1.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	before := viewOf(s1.Store())

	s2, err := server.New(config(t, dir))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	t.Cleanup(func() { _ = s2.Shutdown() })
	select {
	case <-s2.CaughtUp():
	case <-time.After(20 * time.Second):
		t.Fatal("CaughtUp not closed 20s after the restart")
	}
	if diff := cmp.Diff(before, viewOf(s2.Store())); diff != "" {
		t.Errorf("state when CaughtUp closed differs from the state before the restart (-before +after):\n%s", diff)
	}
}

// A backlog of identical jobs: the scheduler sees the first of them and a
// tail (sched.Tail). Every job still gets its reason logged and served
// live, and the whole backlog runs once there is room.
func TestBacklogTailJobsGetTheirReasons(t *testing.T) {
	s := start(t, config(t, t.TempDir()))
	register(t, s, "n1", 2)
	jobs := make([]model.Job, 300)
	for i := range jobs {
		jobs[i] = *testkit.Job(0).Resources(model.Resources{MilliCPU: 1000}).Build()
	}
	ids, err := s.SubmitJobs(ctx(t), jobs)
	if err != nil {
		t.Fatal(err)
	}
	last := ids[len(ids)-1]
	waitFor(t, "the last job's reason in the log", func() bool {
		return s.Store().Snapshot().Job(last).Reason.Code == model.ReasonResources
	})
	// The pass publishes its messages once its codes are applied: a moment
	// after the log shows them.
	waitFor(t, "the last job's live reason", func() bool {
		_, ok := s.LiveReason(last)
		return ok
	})
	if r, _ := s.LiveReason(last); r.Code != model.ReasonResources || !strings.Contains(r.Message, "fit now") {
		t.Errorf("live reason of the last job = %+v; want Resources with numbers", r)
	}
	running := 0
	for _, id := range ids {
		switch j := s.Store().Snapshot().Job(id); j.State {
		case model.JobRunning:
			running++
		case model.JobPending:
			if j.Reason.Code != model.ReasonResources && j.Reason.Code != model.ReasonReserved {
				t.Fatalf("job %s pending with reason %+v", id, j.Reason)
			}
		}
	}
	if running != 2 {
		t.Errorf("%d jobs running on 2 cores, want 2", running)
	}
	// Room for all: the backlog drains through the tails.
	register(t, s, "n2", 400)
	waitFor(t, "every job running", func() bool {
		for _, id := range ids {
			if jobState(s, id) != model.JobRunning {
				return false
			}
		}
		return true
	})
}
