package exec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
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
//
// It handles both kinds of task directory, whatever this runner's mode:
// those of a per-task supervisor (they hold spec.json) and those of the node
// daemon, so an agent can switch modes without losing running tasks.
func (r *Runner) Recover() ([]RecoveredTask, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("exec: Recover: %w", err)
	}
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		if e.IsDir() && validID(e.Name()) == nil {
			present[e.Name()] = true
		}
	}
	var out []RecoveredTask
	starting := map[string]bool{}
	if r.node != nil {
		// Register the daemon's running tasks in the reader, as the list
		// reply arrives: their end events follow it on the connection.
		adopted, err := r.listNode(present, starting)
		if err != nil {
			return nil, err
		}
		out = append(out, adopted...)
	}
	for _, e := range entries {
		id := e.Name()
		if !present[id] || starting[id] {
			continue
		}
		r.mu.Lock()
		closed, known := r.closed, r.tasks[id] != nil
		r.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if known {
			continue
		}
		dir := filepath.Join(r.dir, id)
		if res, ok, err := readStatus(dir); ok && err == nil {
			r.register(&task{id: id, dir: dir, cg: r.cg.forTask(id), ended: true})
			out = append(out, RecoveredTask{ID: id, Result: res})
			continue
		}
		data, err := readSmall(filepath.Join(dir, specFile))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				continue
			}
			// A node-mode directory with no status that the daemon does
			// not run (or no daemon: task mode): lost.
			if _, err := os.Stat(filepath.Join(dir, stdoutFile)); err != nil {
				continue // not a task directory
			}
			if r.node == nil && daemonAlive(r.dir) {
				r.log.Warn("Recover: a node supervisor daemon runs this task; use a runner in node mode to follow it", "task", id)
				continue
			}
			t := &task{id: id, dir: dir, cg: r.cg.forTask(id), node: true}
			if !r.register(t) {
				continue
			}
			out = append(out, r.recordLost(t, "supervisor gone without recording a result (found by Recover)"))
			continue
		}
		spec, err := decodeSpec(data)
		if err != nil || spec.Task.ID != id {
			r.log.Warn("Recover: skipping task directory with a bad spec", "dir", dir, "err", err)
			continue
		}
		t := &task{id: id, dir: dir, cg: spec.Cgroup, grace: killGrace(spec.Task, -1)}
		if !r.register(t) {
			continue
		}
		out = append(out, r.adopt(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// register adds a recovered task unless the runner knows the ID already.
func (r *Runner) register(t *task) bool {
	if t.started == nil {
		t.started = make(chan struct{})
		close(t.started)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tasks[t.id] != nil || r.closed {
		return false
	}
	r.tasks[t.id] = t
	return true
}

// listNode asks the daemon for its tasks and adopts the running ones found
// in present; it fills starting with the tasks someone is starting now.
func (r *Runner) listNode(present, starting map[string]bool) ([]RecoveredTask, error) {
	var out []RecoveredTask
	onReply := func(rep *reply) {
		out = out[:0]
		for _, id := range rep.Starting {
			starting[id] = true
		}
		for _, rt := range rep.Running {
			if !present[rt.ID] {
				continue // started after we looked: not ours to recover
			}
			t := &task{id: rt.ID, dir: filepath.Join(r.dir, rt.ID), cg: r.cg.forTask(rt.ID), node: true, startedAt: rt.StartedAt}
			if r.register(t) {
				out = append(out, RecoveredTask{ID: rt.ID, Running: true})
			}
		}
	}
	var err error
	for range 3 {
		var rep reply
		rep, err = r.node.call(request{Op: opList}, onReply)
		if err == nil && rep.Err != "" {
			err = errors.New(rep.Err)
		}
		if !errors.Is(err, errConnLost) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("exec: Recover: %w", err)
	}
	return out, nil
}

// adopt decides whether a per-task supervisor's task is running, ended, or lost.
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
	return r.recordLost(t, "supervisor gone without recording a result (found by Recover)")
}

// recordLost records a task nobody supervises any more as ended with
// ExitCode -1, unless its status file appeared meanwhile.
func (r *Runner) recordLost(t *task, msg string) RecoveredTask {
	if res, ok, err := readStatus(t.dir); ok && err == nil {
		r.markEnded(t)
		return RecoveredTask{ID: t.id, Result: res}
	}
	_ = r.lost(t, msg)
	r.markEnded(t)
	res, _, _ := readStatus(t.dir)
	if res.FinishedAt.IsZero() {
		res = Result{ExitCode: -1, Lost: msg, FinishedAt: time.Now()}
	}
	return RecoveredTask{ID: t.id, Result: res}
}

// daemonAlive reports whether a node daemon holds dir's lock.
func daemonAlive(dir string) bool {
	f, err := os.Open(filepath.Join(dir, lockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

func (r *Runner) markEnded(t *task) {
	r.mu.Lock()
	t.ended = true
	r.mu.Unlock()
}
