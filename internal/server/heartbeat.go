package server

import (
	"context"
	"fmt"
	"slices"
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
// finished jobs, those that ended first, in bounded batches.
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
			batch := ids[:min(len(ids), 1000)]
			ids = ids[len(batch):]
			if _, err := s.apply(ctx, &fsm.PruneJobs{IDs: batch}); err != nil {
				s.log.Warn("prune finished jobs", "err", err)
				break
			}
		}
	}
}

func (s *Server) jobsToPrune(now time.Time) []model.JobID {
	cutoff := now.Add(-s.cfg.JobRetention)
	var ids []model.JobID
	var kept []*model.Job // finished, within the retention
	snap := s.store.Snapshot()
	// Everything older than the cutoff goes, and past the cap the jobs that
	// ended first (not the lowest IDs: a long job that has just ended
	// stays), except jobs whose tasks are still stopping (the FSM keeps
	// those; asking would only add a useless entry to the log every
	// interval).
	snap.Jobs(func(j *model.Job) bool {
		if !j.State.Terminal() {
			return true
		}
		if j.EndTime.Before(cutoff) {
			if !stillStopping(snap, j.ID) {
				ids = append(ids, j.ID)
			}
		} else {
			kept = append(kept, j)
		}
		return true
	})
	if len(kept) > s.cfg.MaxFinishedJobs {
		// Latest to end first; Jobs gave them newest ID first, which the
		// stable sort keeps among equal end times.
		slices.SortStableFunc(kept, func(a, b *model.Job) int { return b.EndTime.Compare(a.EndTime) })
		for _, j := range kept[s.cfg.MaxFinishedJobs:] {
			if !stillStopping(snap, j.ID) {
				ids = append(ids, j.ID)
			}
		}
	}
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
