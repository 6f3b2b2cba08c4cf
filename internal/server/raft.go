package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/state"
)

// raftFSM adapts fsm.FSM to raft.FSM.
type raftFSM struct{ f *fsm.FSM }

func (r raftFSM) Apply(l *raft.Log) any { return r.f.Apply(l.Index, l.Term, l.Data) }

func (r raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := r.f.Halted(); err != nil {
		// The state lags the log: a snapshot would claim entries it lacks
		// and let raft compact them away.
		return nil, fmt.Errorf("no snapshot of a halted state: %w", err)
	}
	return stateSnapshot{r.f.Store().Snapshot()}, nil
}

func (r raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return r.f.Restore(rc)
}

// stateSnapshot is taken instantly (a version of the state store) and persisted
// later without blocking the FSM, as raft.FSMSnapshot allows.
type stateSnapshot struct{ s *state.Snapshot }

func (s stateSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.s.Persist(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (stateSnapshot) Release() {}

// openRaft creates the raft node from the data directory, bootstrapping a
// one-server cluster when the directory holds no raft state yet.
func (s *Server) openRaft() error {
	dir := filepath.Join(s.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create raft directory: %w", err)
	}
	hlog := newHCLogger(s.log.With("component", "raft"))

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.Name)
	rc.Logger = hlog
	// Fail over in about a second instead of raft's default of several:
	// followers campaign after 0.5-1 s without the leader, and a leader cut
	// off from the majority steps down after 250 ms. Measured over 20 leader
	// kills (test/failover_test.go); 1 s timeouts gave p99 writes-back 2.9 s.
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	rc.LeaderLeaseTimeout = 250 * time.Millisecond
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.TrailingLogs = s.cfg.TrailingLogs

	dbPath := filepath.Join(dir, "raft.db")
	if err := checkDataDir(dir, dbPath); err != nil {
		return err
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: raftLogBoltOptions()})
	if err != nil {
		return fmt.Errorf("open raft log %s: %w", dbPath, err)
	}
	s.boltStore = store
	logs, err := raft.NewLogCache(1024, watchedLogStore{LogStore: store, s: s})
	if err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		return fmt.Errorf("open raft snapshots in %s: %w", dir, err)
	}
	var trans *raft.NetworkTransport
	if s.cfg.RaftStream != nil {
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: s.cfg.RaftStream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog,
		})
	} else {
		advertise, err := net.ResolveTCPAddr("tcp", s.cfg.RaftAdvertise)
		if err != nil {
			return fmt.Errorf("raft advertise address %q: %w", s.cfg.RaftAdvertise, err)
		}
		if trans, err = raft.NewTCPTransportWithLogger(s.cfg.RaftBind, advertise, 3, 10*time.Second, hlog); err != nil {
			return fmt.Errorf("raft listen on %s: %w", s.cfg.RaftBind, err)
		}
	}
	s.transport = trans

	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state in %s: %w", dir, err)
	}
	if !existing && s.cfg.Bootstrap {
		conf := raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: trans.LocalAddr(), Suffrage: raft.Voter,
		}}}
		if err := raft.BootstrapCluster(rc, logs, store, snaps, trans, conf); err != nil {
			return fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	if s.bootIndex, err = logs.LastIndex(); err != nil {
		return fmt.Errorf("read raft log in %s: %w", dir, err)
	}
	s.bootCommandIndex = lastCommandIndex(logs, s.bootIndex)
	r, err := raft.NewRaft(rc, raftFSM{s.fsm}, logs, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft from %s: %w", dir, err)
	}
	s.raft = r
	if !existing && !s.cfg.Bootstrap {
		switch {
		case s.cfg.BootstrapExpect > 1:
			s.wg.Add(1)
			go s.bootstrapWhenExpected()
		case len(s.cfg.Join) > 0:
			s.wg.Add(1)
			go s.joinCluster()
		}
	}
	return nil
}

// raftLogBoltOptions are the raft log's bolt settings. The log is appended
// at its end and cut at its start after each snapshot, so its file keeps
// many free pages. Bolt by default writes its whole free list at every
// commit (an array, also searched linearly); kept in memory only, as a
// map, a commit costs what it writes, and opening the file rebuilds the
// list. BenchmarkRaftLogAppend: about 30% less CPU per append.
func raftLogBoltOptions() *bbolt.Options {
	return &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}

// watchedLogStore records the outcome of every write to the raft log
// (Server.StoreFailure): when the disk fills, a leader's own log write fails,
// it steps down, and the elections that follow may fail the same way, so
// clients would otherwise learn only that no leader is known.
type watchedLogStore struct {
	raft.LogStore
	s *Server
}

func (w watchedLogStore) StoreLog(l *raft.Log) error {
	return w.s.noteStore(w.LogStore.StoreLog(l))
}

func (w watchedLogStore) StoreLogs(ls []*raft.Log) error {
	return w.s.noteStore(w.LogStore.StoreLogs(ls))
}

// storeFailure is a failed write to the raft log and when it happened.
type storeFailure struct {
	err error
	at  time.Time
}

func (s *Server) noteStore(err error) error {
	if err != nil {
		s.storeFail.Store(&storeFailure{err: err, at: time.Now()})
	} else if s.storeFail.Load() != nil {
		s.storeFail.Store(nil)
	}
	return err
}

// storeFailureMemory is how long a failed log write is reported after it
// happened if no write has succeeded since.
const storeFailureMemory = time.Minute

// StoreFailure is the error of this server's last write to its raft log if
// that write failed (and within the last minute): a full disk, say. nil once
// a write succeeds.
func (s *Server) StoreFailure() error {
	f := s.storeFail.Load()
	if f == nil || time.Since(f.at) > storeFailureMemory {
		return nil
	}
	return f.err
}

// ErrNotLeader is returned by writes on a server that is not the leader (or
// is a leader that has not finished taking over).
var ErrNotLeader = errors.New("this server is not the leader")

// apply proposes one command and waits for it to be applied.
func (s *Server) apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	f, err := s.propose(ctx, cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	return s.await(f, cmd)
}

// propose hands one command to raft. It returns once raft has queued it, so
// commands proposed one after another from one goroutine (or under one
// lock) are applied in that order.
func (s *Server) propose(ctx context.Context, cmd fsm.Command) (raft.ApplyFuture, error) {
	b, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return s.raft.Apply(b, timeout), nil
}

// await waits for a proposed command to be applied and returns its result.
func (s *Server) await(f raft.ApplyFuture, cmd fsm.Command) (fsm.Result, error) {
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return fsm.Result{}, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return fsm.Result{}, fmt.Errorf("replicate %T: %w", cmd, err)
	}
	res, _ := f.Response().(fsm.Result)
	return res, res.Err
}

// newHCLogger routes raft's hclog output into slog.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.Warn,
		Output:     slogWriter{l},
		JSONFormat: false,
	})
}

type slogWriter struct{ l *slog.Logger }

// firstElection is raft's warning when a follower campaigns without ever
// having heard of a leader (the last leader's address is empty).
const firstElection = "starting election: last-leader-addr= "

func (w slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		msg := string(line)
		switch {
		case strings.Contains(msg, "[ERROR]"):
			w.l.Error(msg)
		case strings.Contains(msg, firstElection):
			// Every server that starts without a leader says this once;
			// a warning at each start would teach operators to ignore
			// the same line when a leader really is lost.
			w.l.Info(msg)
		default:
			w.l.Warn(msg)
		}
	}
	return len(p), nil
}

// lastCommandIndex is the index of the last command entry (one the FSM
// applies) at or before last, or 0 if none is found among the entries
// still in the log. The entries after it (an election's no-op, a
// configuration change) never reach the FSM. Only the log's tail is read:
// it ends with a command in all but a few entries.
func lastCommandIndex(logs raft.LogStore, last uint64) uint64 {
	const maxScan = 1000
	for i := last; i > 0 && last-i < maxScan; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return 0 // compacted away: a snapshot holds it
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return 0
}
