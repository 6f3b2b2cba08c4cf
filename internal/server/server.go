package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/state"
)

// Config configures a server.
type Config struct {
	Name          string // unique server name (raft server ID)
	DataDir       string // raft log, snapshots
	RaftBind      string // host:port raft listens on
	RaftAdvertise string // host:port other servers reach it on; default RaftBind
	// RaftStream, if set, carries raft instead of a TCP listener on
	// RaftBind: cmd/ passes the raft side of Multiplex, so one port serves
	// both the API and raft, and RaftStream.Addr() is the advertised address.
	RaftStream raft.StreamLayer
	// Bootstrap makes a fresh data directory a one-server cluster.
	Bootstrap bool
	// BootstrapExpect > 1 makes a fresh server wait until it has found that
	// many servers (itself and those answering at Join), then all of them
	// bootstrap the same configuration. With BootstrapExpect 0 and Join set,
	// a fresh server asks the cluster at Join to add it.
	BootstrapExpect int
	Join            []string // API addresses of other servers

	HeartbeatInterval time.Duration // agents heartbeat this often (default 1s)
	HeartbeatTimeout  time.Duration // node down after this long without one (default 10s)

	// Finished jobs stay queryable for JobRetention (default 24h), and at
	// most MaxFinishedJobs of them are kept (default 100,000; those that ended
	// first go first).
	JobRetention    time.Duration
	MaxFinishedJobs int
	// PruneInterval is how often finished jobs are pruned (default 10s):
	// often, so that a busy server forgets a few thousand at a time rather
	// than a minute's worth in one burst.
	PruneInterval time.Duration

	// Raft snapshots: one is taken when SnapshotThreshold entries were
	// applied since the last (checked every SnapshotInterval), and the log
	// then keeps only TrailingLogs entries behind it. Defaults: 16384
	// entries, 2m, 10240 entries. Tests lower them to exercise recovery
	// from a snapshot.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// Queues are applied whenever this server becomes leader: each queue
	// that is missing or differs is created or replaced (the --queues file).
	Queues []model.Queue

	// Sched configures the scheduler. Sched.NoPreemption turns preemption
	// off; Sched.PreemptGrace (default DefaultPreemptGrace) is both the
	// time a preempted task gets between SIGTERM and SIGKILL to checkpoint
	// and when the scheduler expects its room to be free.
	Sched sched.Config
	// SchedRecheck is the longest the scheduler goes without a pass while
	// jobs are pending and nothing changes (default DefaultSchedRecheck):
	// time alone changes a plan (a running job outlives its predicted end,
	// a reservation falls due), and reasons quote times. A pass also runs
	// when the earliest reservation is due, if that comes sooner.
	SchedRecheck time.Duration
	Logger       *slog.Logger
	Now          func() time.Time // default time.Now; injected for tests
}

// DefaultPreemptGrace is how long a preempted task has between SIGTERM and
// SIGKILL when Config.Sched.PreemptGrace is unset: long enough to write a
// checkpoint of modest size, short enough that a high-priority job does not
// wait long (Slurm's GraceTime and Kubernetes' terminationGracePeriodSeconds
// default to 0 and 30 s).
const DefaultPreemptGrace = 30 * time.Second

// DefaultSchedRecheck is Config.SchedRecheck's default: often enough that
// an overdue prediction or a due reservation is acted on within seconds
// (Slurm's backfill runs every 30 s), rarely enough that a large backlog's
// passes cost little when nothing happens.
const DefaultSchedRecheck = 10 * time.Second

func (c *Config) setDefaults() error {
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("server name: %w", err)
		}
		c.Name = h
	}
	if c.DataDir == "" {
		return errors.New("server: DataDir is required")
	}
	if c.RaftBind == "" {
		c.RaftBind = "127.0.0.1:7071"
	}
	if c.RaftAdvertise == "" {
		c.RaftAdvertise = c.RaftBind
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 10 * time.Second
	}
	if c.HeartbeatTimeout < 2*c.HeartbeatInterval {
		return fmt.Errorf("server: heartbeat timeout %s must be at least twice the interval %s", c.HeartbeatTimeout, c.HeartbeatInterval)
	}
	if c.JobRetention <= 0 {
		c.JobRetention = 24 * time.Hour
	}
	if c.MaxFinishedJobs <= 0 {
		c.MaxFinishedJobs = 100_000
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = 10 * time.Second
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 16384
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = 2 * time.Minute
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.Sched.PreemptGrace < 0 {
		return fmt.Errorf("server: preempt grace %s must not be negative", c.Sched.PreemptGrace)
	}
	if c.Sched.PreemptGrace == 0 {
		c.Sched.PreemptGrace = DefaultPreemptGrace
	}
	if c.SchedRecheck < 0 {
		return fmt.Errorf("server: scheduler recheck interval %s must not be negative", c.SchedRecheck)
	}
	if c.SchedRecheck == 0 {
		c.SchedRecheck = DefaultSchedRecheck
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Server is one dure control-plane server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store *state.Store
	fsm   *fsm.FSM

	raft      *raft.Raft
	boltStore *raftboltdb.BoltStore
	transport *raft.NetworkTransport

	// Leader-only soft state, valid while leading is true.
	leading   atomic.Bool
	nextJobID atomic.Uint64 // handed out by the submit loop only
	// The group commit of submissions (submit.go): requests queue here
	// while subOpen (the submit loop runs) and subWake wakes the loop.
	subMu    sync.Mutex
	subOpen  bool
	subQueue []*submitReq
	subWake  chan struct{}
	hbMu     sync.Mutex
	lastSeen map[string]time.Time
	// liveReasons is the latest pass's reasons for unplaced pending jobs.
	liveReasons atomic.Pointer[livePass]

	// halted is closed when the FSM meets a log entry written by a newer
	// dure (fsm.ErrNewerEntry): this server can no longer follow the log.
	halted   chan struct{}
	haltOnce sync.Once

	// storeFail is the last write to the raft log, if it failed
	// (StoreFailure).
	storeFail atomic.Pointer[storeFailure]

	// bootIndex is the last entry of the log as this server found it on
	// disk at start, bootCommandIndex the last command among them; caughtUp
	// is closed once raft has applied that far and the state holds that
	// command (CaughtUp).
	bootIndex        uint64
	bootCommandIndex uint64
	caughtUp         chan struct{}

	stop     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
}

// New opens (or creates) the server's data directory and starts raft. The
// leader loops start when this server becomes leader.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	store := state.New()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "server", "server", cfg.Name),
		store:    store,
		fsm:      fsm.New(store),
		lastSeen: map[string]time.Time{},
		stop:     make(chan struct{}),
		subWake:  make(chan struct{}, 1),
		halted:   make(chan struct{}),
		caughtUp: make(chan struct{}),
	}
	s.fsm.OnHalt(func(err error) {
		s.log.Error("cannot follow the log: this server must be upgraded", "err", err)
		s.haltOnce.Do(func() { close(s.halted) })
	})
	if err := s.openRaft(); err != nil {
		s.closeStores()
		return nil, err
	}
	s.wg.Add(2)
	go s.watchLeadership()
	go s.watchCatchUp()
	return s, nil
}

// catchUpLimit bounds how long CaughtUp stays open at start. Entries a
// restarted follower holds but the cluster never committed are truncated,
// never applied; reads then wait no longer than this.
const catchUpLimit = 30 * time.Second

// CaughtUp is closed once this server has applied the log it found on disk
// at start. Until then its state is the last snapshot's: after a restart,
// raft replays the later entries only once a leader is known (for a single
// server, after its own election), and a read before that would show jobs
// as they were at the snapshot, running ones that have since ended. The
// API holds reads until then.
func (s *Server) CaughtUp() <-chan struct{} { return s.caughtUp }

func (s *Server) watchCatchUp() {
	defer s.wg.Done()
	defer close(s.caughtUp)
	deadline := time.Now().Add(catchUpLimit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	// Raft counts an entry applied once it has handed it to the FSM, not
	// once the FSM is done with it: the state's own index says that.
	for s.raft.AppliedIndex() < s.bootIndex || s.store.Index() < s.bootCommandIndex {
		if time.Now().After(deadline) {
			s.log.Warn("serving reads before the log found at start is applied", "applied", s.raft.AppliedIndex(), "log_end", s.bootIndex, "waited", catchUpLimit)
			return
		}
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

// Shutdown stops the leader loops and raft, and closes the data directory.
func (s *Server) Shutdown() error {
	var err error
	s.shutOnce.Do(func() {
		close(s.stop)
		if s.raft != nil {
			err = s.raft.Shutdown().Error()
		}
		s.wg.Wait()
		s.closeStores()
	})
	return err
}

func (s *Server) closeStores() {
	if s.transport != nil {
		_ = s.transport.Close()
	}
	if s.boltStore != nil {
		_ = s.boltStore.Close()
	}
}

// Halted is closed when this server met a log entry written by a newer
// version of dure (a mixed-version cluster upgraded in the wrong order).
// It applies nothing further and takes no snapshots; HaltErr says why. The
// caller should shut it down: restarted on the newer binary, it replays the
// log from its last snapshot and catches up.
func (s *Server) Halted() <-chan struct{} { return s.halted }

// HaltErr is why the server halted, or nil.
func (s *Server) HaltErr() error { return s.fsm.Halted() }

// Store is the state for reads. Callers take snapshots from it.
func (s *Server) Store() *state.Store { return s.store }

// Name is this server's name.
func (s *Server) Name() string { return s.cfg.Name }

// IsLeader reports whether this server leads and has finished taking over.
func (s *Server) IsLeader() bool { return s.leading.Load() }

// LeaderAddr is the raft address of the current leader, "" if unknown.
func (s *Server) LeaderAddr() string {
	addr, _ := s.raft.LeaderWithID()
	return string(addr)
}

// HeartbeatConfig returns what agents are told at registration.
func (s *Server) HeartbeatConfig() (interval, timeout time.Duration) {
	return s.cfg.HeartbeatInterval, s.cfg.HeartbeatTimeout
}

// LastSeen is when the leader last heard from a node (zero if unknown or not leader).
func (s *Server) LastSeen(node string) time.Time {
	s.hbMu.Lock()
	defer s.hbMu.Unlock()
	return s.lastSeen[node]
}

// watchLeadership starts the leader loops on gaining leadership and stops
// them on losing it.
func (s *Server) watchLeadership() {
	defer s.wg.Done()
	var cancel context.CancelFunc
	var loops sync.WaitGroup
	stopLoops := func() {
		if cancel != nil {
			s.leading.Store(false)
			cancel()
			loops.Wait()
			cancel = nil
		}
	}
	defer stopLoops()
	for {
		select {
		case <-s.stop:
			return
		case isLeader := <-s.raft.LeaderCh():
			stopLoops()
			if !isLeader {
				s.log.Info("lost leadership")
				continue
			}
			ctx, c := context.WithCancel(context.Background())
			cancel = c
			loops.Add(1)
			go func() {
				defer loops.Done()
				s.lead(ctx)
			}()
		}
	}
}

// lead runs while this server is leader.
func (s *Server) lead(ctx context.Context) {
	s.log.Info("became leader")
	// Apply everything earlier leaders committed before acting on state.
	if err := s.raft.Barrier(10 * time.Second).Error(); err != nil {
		s.log.Error("leader barrier failed; giving up leadership loops", "err", err)
		return
	}
	snap := s.store.Snapshot()
	if snap.Queue(model.DefaultQueue) == nil {
		_, err := s.apply(ctx, &fsm.UpsertQueue{Queue: model.Queue{Name: model.DefaultQueue, Description: "jobs that name no queue"}})
		if err != nil {
			s.log.Error("create default queue", "err", err)
			return
		}
	}
	for _, q := range s.cfg.Queues {
		if cur := s.store.Snapshot().Queue(q.Name); cur != nil && sameQueue(cur, &q) {
			continue
		}
		if _, err := s.apply(ctx, &fsm.UpsertQueue{Queue: q}); err != nil {
			s.log.Error("apply configured queue", "queue", q.Name, "err", err)
			return
		}
	}
	s.nextJobID.Store(uint64(s.store.Snapshot().LastJobID()) + 1)
	// Every node gets a full heartbeat timeout of grace after a leader change.
	now := s.cfg.Now()
	s.hbMu.Lock()
	s.lastSeen = map[string]time.Time{}
	for _, n := range snap.Nodes() {
		s.lastSeen[n.Name] = now
	}
	s.hbMu.Unlock()
	s.subMu.Lock()
	s.subOpen = true
	s.subMu.Unlock()
	s.leading.Store(true)

	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){s.scheduleLoop, s.heartbeatLoop, s.pruneLoop, s.submitLoop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	wg.Wait()
}

func (s *Server) requireLeader() error {
	if !s.leading.Load() {
		return ErrNotLeader
	}
	return nil
}

// CancelJob cancels a job.
func (s *Server) CancelJob(ctx context.Context, id model.JobID, reason string) error {
	if err := s.requireLeader(); err != nil {
		return err
	}
	_, err := s.apply(ctx, &fsm.CancelJob{Time: s.cfg.Now(), ID: id, Reason: reason})
	return err
}

// CancelArray cancels every unfinished element of a job array.
func (s *Server) CancelArray(ctx context.Context, id model.JobID, reason string) error {
	if err := s.requireLeader(); err != nil {
		return err
	}
	_, err := s.apply(ctx, &fsm.CancelArray{Time: s.cfg.Now(), ArrayID: id, Reason: reason})
	return err
}

// DrainNode sets or clears a node's drain flag.
func (s *Server) DrainNode(ctx context.Context, name string, drain bool, reason string) error {
	if err := s.requireLeader(); err != nil {
		return err
	}
	if drain && reason == "" {
		// Draining a drained node again without a reason keeps the one
		// the operator gave first.
		if n := s.store.Snapshot().Node(name); n != nil && n.Drain {
			reason = n.DrainReason
		}
	}
	_, err := s.apply(ctx, &fsm.DrainNode{Time: s.cfg.Now(), Name: name, Drain: drain, Reason: reason})
	return err
}

// RegisterNode records an agent's registration; the node is ready.
func (s *Server) RegisterNode(ctx context.Context, n model.Node) error {
	if err := s.requireLeader(); err != nil {
		return err
	}
	if _, err := s.apply(ctx, &fsm.RegisterNode{Time: s.cfg.Now(), Node: n}); err != nil {
		return err
	}
	s.hbMu.Lock()
	s.lastSeen[n.Name] = s.cfg.Now()
	s.hbMu.Unlock()
	return nil
}

// Heartbeat records that a node's agent is alive. It asks the agent to
// register again when the leader does not know it as ready under that
// session (first contact with a new leader after a restart, or a node that
// was declared down).
func (s *Server) Heartbeat(name, session string) (reregister bool, err error) {
	if err := s.requireLeader(); err != nil {
		return false, err
	}
	n := s.store.Snapshot().Node(name)
	if n == nil || n.Status != model.NodeReady || n.SessionID != session {
		return true, nil
	}
	s.hbMu.Lock()
	s.lastSeen[name] = s.cfg.Now()
	s.hbMu.Unlock()
	return false, nil
}

// UpsertQueue creates or replaces a queue (validated by the caller).
func (s *Server) UpsertQueue(ctx context.Context, q model.Queue) error {
	if err := s.requireLeader(); err != nil {
		return err
	}
	_, err := s.apply(ctx, &fsm.UpsertQueue{Queue: q})
	return err
}

// UpdateAllocs replicates a batch of agent reports.
func (s *Server) UpdateAllocs(ctx context.Context, updates []fsm.AllocUpdate) error {
	if err := s.requireLeader(); err != nil {
		return err
	}
	_, err := s.apply(ctx, &fsm.AllocUpdates{Time: s.cfg.Now(), Updates: updates})
	return err
}

// sameQueue compares the configured fields of two queues.
func sameQueue(a, b *model.Queue) bool {
	x, y := *a.Copy(), *b.Copy()
	x.CreateIndex, x.ModifyIndex, y.CreateIndex, y.ModifyIndex = 0, 0, 0, 0
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// contactTimeout is how long a follower may go without hearing from a leader
// before it stops holding blocking queries (see InContact).
const contactTimeout = 2 * time.Second

// InContact reports whether this server is the leader or heard from one
// within contactTimeout. A follower cut off from the leader still answers
// reads from its (possibly stale) state, but refuses long watches so that
// agents and clients move to a server in touch with the cluster.
func (s *Server) InContact() bool {
	if s.raft.State() == raft.Leader {
		return true
	}
	last := s.raft.LastContact()
	return !last.IsZero() && time.Since(last) < contactTimeout
}
