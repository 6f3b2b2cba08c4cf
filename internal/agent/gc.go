package agent

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/durehq/dure/internal/exec"
)

// gcInterval is how often ended tasks are checked against the retention;
// a task's directory goes at most this long after its retention ran out.
func gcInterval(retention time.Duration) time.Duration {
	return min(max(retention/4, time.Second), 10*time.Minute)
}

// gcLoop removes the directories (logs included) of ended tasks once they
// are older than Config.LogRetention. It reads the wall clock; gc itself
// takes the time as an argument so tests can move it.
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
		}
	}
}

// gc removes every ended task that ended at least LogRetention before now,
// with its record: after that long the servers have long stopped listing it.
func (a *Agent) gc(now time.Time) {
	cutoff := now.Add(-a.cfg.LogRetention)
	var ids []string
	a.mu.Lock()
	for id, t := range a.tasks {
		if t.state == taskEnded && !t.endedAt.After(cutoff) {
			ids = append(ids, id)
		}
	}
	for id, ended := range a.onDisk {
		if _, ok := a.tasks[id]; !ok && !ended.After(cutoff) {
			ids = append(ids, id)
		}
	}
	a.mu.Unlock()

	for _, id := range ids {
		err := a.runner.Remove(id)
		if err != nil && !errors.Is(err, exec.ErrUnknownTask) && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("removing an ended task's directory failed", "alloc", id, "err", err)
			continue
		}
		a.log.Debug("removed ended task after log retention", "alloc", id)
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
