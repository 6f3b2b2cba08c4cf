package agent

import (
	"cmp"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/durehq/dure/internal/exec"
)

// gcInterval is how often ended tasks are checked against the retention;
// a task's directory goes at most this long after its retention ran out.
func gcInterval(retention time.Duration) time.Duration {
	return min(max(retention/4, time.Second), 10*time.Minute)
}

// gcLoop removes the directories (logs included) of ended tasks once they
// are older than Config.LogRetention, or the oldest beyond
// Config.MaxEndedTasks. It reads the wall clock; gc itself takes the time as
// an argument so tests can move it.
func (a *Agent) gcLoop(ctx context.Context) {
	t := time.NewTicker(gcInterval(a.cfg.LogRetention))
	defer t.Stop()
	a.gc(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.gc(now)
		case <-a.gcNow:
			a.gc(time.Now())
		}
	}
}

// noteEnded asks gcLoop for a pass once the agent remembers a tenth more
// tasks than it keeps ended ones; a.mu is held.
func (a *Agent) noteEnded() {
	if len(a.tasks)+len(a.onDisk) > a.cfg.MaxEndedTasks+a.cfg.MaxEndedTasks/10 {
		select {
		case a.gcNow <- struct{}{}:
		default: // one is pending
		}
	}
}

// gc removes every ended task that ended at least LogRetention before now
// (after that long the servers have long stopped listing it), and the ones
// that ended first beyond the newest MaxEndedTasks, with their records.
func (a *Agent) gc(now time.Time) {
	cutoff := now.Add(-a.cfg.LogRetention)
	type ended struct {
		id string
		at time.Time
	}
	var all []ended
	a.mu.Lock()
	for id, t := range a.tasks {
		if t.state == taskEnded {
			all = append(all, ended{id, t.endedAt})
		}
	}
	for id, at := range a.onDisk {
		if _, ok := a.tasks[id]; !ok {
			all = append(all, ended{id, at})
		}
	}
	a.mu.Unlock()
	slices.SortFunc(all, func(x, y ended) int { return cmp.Or(x.at.Compare(y.at), strings.Compare(x.id, y.id)) })
	over := len(all) - a.cfg.MaxEndedTasks
	var ids []string
	for i, e := range all {
		if i >= over && e.at.After(cutoff) {
			break // the rest ended later still
		}
		ids = append(ids, e.id)
	}

	for _, id := range ids {
		err := a.runner.Remove(id)
		if err != nil && !errors.Is(err, exec.ErrUnknownTask) && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("removing an ended task's directory failed", "alloc", id, "err", err)
			continue
		}
		a.log.Debug("removed ended task", "alloc", id)
		a.mu.Lock()
		delete(a.tasks, id)
		delete(a.onDisk, id)
		a.mu.Unlock()
	}
}

// adoptRecovered records what exec's Recover found in the task directory:
// running tasks become adopted tasks (the allocation watch stops them if the
// servers no longer list them, and reports them running if the servers never
// heard they started); ended ones are kept for the GC.
func (a *Agent) adoptRecovered(rec []exec.RecoveredTask) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range rec {
		if r.Running {
			a.track(r.ID, &task{state: taskRunning, adopted: true, startedAt: a.taskStartTime(r.ID)})
			continue
		}
		ended := r.Result.FinishedAt
		if ended.IsZero() {
			ended = now
		}
		a.onDisk[r.ID] = ended
	}
	if len(rec) > 0 {
		a.log.Info("found tasks of an earlier agent process", "tasks", len(rec), "running", len(a.live))
	}
}
