package exec

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// RecoveredTask is a task found in Config.Dir by Recover.
type RecoveredTask struct {
	ID      string
	Running bool   // its supervisor is alive; a TaskEvent follows when it ends
	Result  Result // how it ended, when !Running
}

// Recover adopts the tasks a previous runner (a previous agent process) left
// in Config.Dir: running tasks are watched again and produce a TaskEvent
// when they end; ended ones are listed with their Result. A task whose
// supervisor died without recording a result has its leftover processes
// killed and is recorded with ExitCode -1. Tasks this runner already knows
// are skipped. Call it once, right after NewRunner.
func (r *Runner) Recover() ([]RecoveredTask, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("exec: Recover: %w", err)
	}
	var out []RecoveredTask
	for _, e := range entries {
		id := e.Name()
		if !e.IsDir() || validID(id) != nil {
			continue
		}
		dir := filepath.Join(r.dir, id)
		data, err := readSmall(filepath.Join(dir, specFile))
		if err != nil {
			continue // not a task directory (or one Start never finished writing)
		}
		spec, err := decodeSpec(data)
		if err != nil || spec.Task.ID != id {
			r.log.Warn("Recover: skipping task directory with a bad spec", "dir", dir, "err", err)
			continue
		}
		t := &task{id: id, dir: dir, cg: spec.Cgroup, grace: killGrace(spec.Task, -1), started: make(chan struct{})}
		close(t.started)
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		if r.tasks[id] != nil {
			r.mu.Unlock()
			continue
		}
		r.tasks[id] = t
		r.mu.Unlock()

		rec := r.adopt(t)
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// adopt decides whether t is running, ended, or lost.
func (r *Runner) adopt(t *task) RecoveredTask {
	if res, ok, err := readStatus(t.dir); ok && err == nil {
		r.markEnded(t)
		return RecoveredTask{ID: t.id, Result: res}
	}
	if pid, ok := readPid(t.dir); ok {
		// Open the pidfd first, then check the command line: if it names
		// this task, the pidfd refers to its supervisor, not a recycled pid.
		if w, err := openPidWatch(pid); err == nil {
			if isSupervisorOf(pid, t.dir) {
				r.mu.Lock()
				t.watch = w
				if st, err := os.Stat(filepath.Join(t.dir, stdoutFile)); err == nil {
					t.startedAt = st.ModTime() // best guess, only used if it is lost later
				}
				r.mu.Unlock()
				r.follow(t)
				return RecoveredTask{ID: t.id, Running: true}
			}
			_ = w.close()
		}
	}
	// The supervisor may have written its status between our two reads.
	if res, ok, err := readStatus(t.dir); ok && err == nil {
		r.markEnded(t)
		return RecoveredTask{ID: t.id, Result: res}
	}
	_ = r.lost(t, "supervisor gone without recording a result (found by Recover)")
	r.markEnded(t)
	res, _, _ := readStatus(t.dir)
	if res.FinishedAt.IsZero() {
		res = Result{ExitCode: -1, FinishedAt: time.Now()}
	}
	return RecoveredTask{ID: t.id, Result: res}
}

func (r *Runner) markEnded(t *task) {
	r.mu.Lock()
	t.ended = true
	r.mu.Unlock()
}
