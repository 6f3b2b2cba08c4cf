package server

import (
	"context"
	"fmt"
	"time"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/state"
)

// heartbeatLoop declares nodes down when they miss their heartbeat deadline.
// Only the transition is logged (DESIGN.md rule 7).
func (s *Server) heartbeatLoop(ctx context.Context) {
	tick := time.NewTicker(max(s.cfg.HeartbeatInterval/2, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := s.cfg.Now()
		for _, n := range s.store.Snapshot().Nodes() {
			if n.Status != model.NodeReady {
				continue
			}
			s.hbMu.Lock()
			last, ok := s.lastSeen[n.Name]
			if !ok { // a node registered through another leader: grace starts now
				s.lastSeen[n.Name] = now
				last = now
			}
			s.hbMu.Unlock()
			silent := now.Sub(last)
			if silent <= s.cfg.HeartbeatTimeout {
				continue
			}
			reason := fmt.Sprintf("no heartbeat for %s (timeout %s)", silent.Round(time.Millisecond), s.cfg.HeartbeatTimeout)
			s.log.Warn("node down", "node", n.Name, "reason", reason)
			if _, err := s.apply(ctx, &fsm.NodeStatus{Time: now, Name: n.Name, Status: model.NodeDown, Reason: reason}); err != nil {
				s.log.Warn("mark node down", "node", n.Name, "err", err)
			}
		}
	}
}

// pruneLoop forgets finished jobs past their retention or beyond the cap on
// finished jobs, those that ended first, in small batches: each is one
// raft entry the FSM applies at once, so other writes wait behind it no
// longer than a few milliseconds.
func (s *Server) pruneLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.PruneInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ids := s.jobsToPrune(s.cfg.Now())
		for len(ids) > 0 {
			batch := ids[:min(len(ids), pruneBatch)]
			ids = ids[len(batch):]
			if _, err := s.apply(ctx, &fsm.PruneJobs{IDs: batch}); err != nil {
				s.log.Warn("prune finished jobs", "err", err)
				break
			}
		}
	}
}

// pruneBatch is the most jobs one PruneJobs entry forgets.
const pruneBatch = 250

// jobsToPrune lists the finished jobs to forget: those that ended before
// the retention's cutoff and, past the cap, those that ended first (not
// the lowest IDs: a long job that has just ended stays). Both are a prefix
// of the store's end-time order, so it reads only the jobs it returns. A
// job whose tasks are still stopping is kept (the FSM would keep it;
// asking would only add a useless entry to the log every interval) but
// counts toward the cap.
func (s *Server) jobsToPrune(now time.Time) []model.JobID {
	cutoff := now.Add(-s.cfg.JobRetention)
	snap := s.store.Snapshot()
	over := snap.FinishedJobCount() - s.cfg.MaxFinishedJobs
	var ids []model.JobID
	snap.FinishedJobsByEnd(func(id model.JobID, end time.Time) bool {
		if !end.Before(cutoff) && over <= 0 {
			return false
		}
		over--
		if !stillStopping(snap, id) {
			ids = append(ids, id)
		}
		return true
	})
	return ids
}

func stillStopping(snap *state.Snapshot, id model.JobID) bool {
	for _, a := range snap.AllocsByJob(id) {
		if !a.Status.Terminal() {
			return true
		}
	}
	return false
}
