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

// scanTaskDir notes the ended tasks left in the task directory by earlier
// agent processes so that the GC removes them in time. Tasks still running
// are left alone: the allocation watch adopts them when the servers list them.
func (a *Agent) scanTaskDir() {
	entries, err := os.ReadDir(a.cfg.Exec.Dir)
	if err != nil {
		a.log.Warn("cannot list task directory", "dir", a.cfg.Exec.Dir, "err", err)
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range entries {
		if !e.IsDir() || !allocIDRe.MatchString(e.Name()) {
			continue
		}
		res, ok := a.runner.Finished(e.Name())
		if !ok {
			continue
		}
		ended := res.FinishedAt
		if ended.IsZero() {
			ended = now
		}
		a.onDisk[e.Name()] = ended
	}
}
