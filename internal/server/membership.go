package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/state"
)

// Member is one server of the raft cluster.
type Member struct {
	Name, Address string
	Voter, Leader bool
}

// Advertise is the address other servers and clients reach this server on.
func (s *Server) Advertise() string { return string(s.transport.LocalAddr()) }

// Members lists the servers in the latest raft configuration.
func (s *Server) Members() ([]Member, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	_, leaderID := s.raft.LeaderWithID()
	var out []Member
	for _, srv := range f.Configuration().Servers {
		out = append(out, Member{
			Name: string(srv.ID), Address: string(srv.Address),
			Voter: srv.Suffrage == raft.Voter, Leader: srv.ID == leaderID,
		})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// AddServer adds a voter (leader only). Adding a server already present
// with the same address is a no-op, so joins can be retried.
func (s *Server) AddServer(_ context.Context, name, address string) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	if name == "" || address == "" {
		return errors.New("a server needs a name and an address")
	}
	err := s.raft.AddVoter(raft.ServerID(name), raft.ServerAddress(address), 0, 10*time.Second).Error()
	return leaderErr(err)
}

// RemoveServer removes a server (leader only). Removing the leader itself
// makes the others elect a new one.
func (s *Server) RemoveServer(_ context.Context, name string) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	members, err := s.Members()
	if err != nil {
		return err
	}
	found := false
	for _, m := range members {
		found = found || m.Name == name
	}
	if !found {
		return fmt.Errorf("server %q is not a member: %w", name, ErrNoSuchServer)
	}
	return leaderErr(s.raft.RemoveServer(raft.ServerID(name), 0, 10*time.Second).Error())
}

var errNoSuchServer = errors.New("no such server")

// ErrBadSnapshot is returned for a snapshot file that cannot be restored.
var ErrBadSnapshot = errors.New("not a valid dure snapshot")

// MaxSnapshotBytes bounds a snapshot given to RestoreSnapshot.
const MaxSnapshotBytes = 1 << 30

// ErrNoSuchServer is returned when removing a server that is not a member.
var ErrNoSuchServer = errNoSuchServer

func leaderErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return err
}

// SaveSnapshot writes the whole state as of a point every committed write
// before the call is in (leader only).
func (s *Server) SaveSnapshot(w io.Writer) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	if err := s.raft.Barrier(10 * time.Second).Error(); err != nil {
		return leaderErr(err)
	}
	return s.store.Snapshot().Persist(w)
}

// RestoreSnapshot replaces the cluster's whole state with a saved snapshot
// (leader only). The leader installs it and replicates it to the followers.
// It is for disaster recovery: every change since the snapshot is lost.
func (s *Server) RestoreSnapshot(r io.Reader) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	// Check the snapshot before raft takes it: a bad file must not leave the
	// cluster half-restored.
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, MaxSnapshotBytes+1))
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if n > MaxSnapshotBytes {
		return fmt.Errorf("%w: larger than %d bytes", ErrBadSnapshot, int64(MaxSnapshotBytes))
	}
	if err := state.New().Restore(bytes.NewReader(buf.Bytes())); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: n}
	return leaderErr(s.raft.Restore(meta, &buf, time.Minute))
}

// bootstrapWhenExpected polls the Join addresses until BootstrapExpect
// servers (this one included) are known, then bootstraps them all as voters.
// Every server computes the same configuration, so whichever bootstraps
// first, the others' identical bootstraps are harmless. If a peer already
// has a leader, the cluster exists and this server joins it instead.
func (s *Server) bootstrapWhenExpected() {
	defer s.wg.Done()
	log := s.log.With("component", "bootstrap")
	self := api.Status{Server: s.cfg.Name, Address: s.Advertise()}
	for {
		known := map[string]string{self.Server: self.Address}
		leaderSeen := false
		for _, addr := range s.cfg.Join {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := api.NewClient(addr).Status(ctx)
			cancel()
			if err != nil || st.Server == "" || st.Address == "" {
				continue
			}
			known[st.Server] = st.Address
			leaderSeen = leaderSeen || st.Leader != ""
		}
		if leaderSeen && s.raft.Leader() == "" {
			log.Info("a cluster already runs at the join addresses; joining it")
			s.wg.Add(1)
			go s.joinCluster()
			return
		}
		if len(known) >= s.cfg.BootstrapExpect {
			var conf raft.Configuration
			for name, addr := range known {
				conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(name), Address: raft.ServerAddress(addr), Suffrage: raft.Voter})
			}
			sort.Slice(conf.Servers, func(a, b int) bool { return conf.Servers[a].ID < conf.Servers[b].ID })
			err := s.raft.BootstrapCluster(conf).Error()
			if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				log.Error("bootstrap failed", "err", err)
			} else {
				log.Info("bootstrapped", "servers", len(conf.Servers))
			}
			return
		}
		log.Info("waiting for servers before bootstrapping", "known", len(known), "expect", s.cfg.BootstrapExpect)
		select {
		case <-s.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// joinCluster asks the servers at Join to add this one until one accepts.
func (s *Server) joinCluster() {
	defer s.wg.Done()
	log := s.log.With("component", "join")
	for {
		for _, addr := range s.cfg.Join {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			err := api.NewClient(addr).JoinServer(ctx, s.cfg.Name, s.Advertise())
			cancel()
			if err == nil {
				log.Info("joined the cluster", "via", addr)
				return
			}
			log.Info("join attempt failed", "via", addr, "err", err)
		}
		select {
		case <-s.stop:
			return
		case <-time.After(time.Second):
		}
	}
}
