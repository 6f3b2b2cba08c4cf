package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Task mode: one supervisor process per task (the dure binary re-executed
// as "dure supervise TASKDIR"), watched by the runner through its pidfd.

// startTaskMode makes the task directory and launches its supervisor.
func (r *Runner) startTaskMode(t *task, spec TaskSpec) (time.Time, error) {
	if err := os.Mkdir(t.dir, 0o755); err != nil {
		r.forget(t)
		if errors.Is(err, os.ErrExist) {
			return time.Time{}, fmt.Errorf("%w: %s (%s exists)", ErrAlreadyStarted, spec.ID, t.dir)
		}
		return time.Time{}, fmt.Errorf("exec: creating task directory: %w", err)
	}
	startedAt, err := r.launch(t, spec)
	if err != nil {
		// The directory stays (a task starts at most once) with a status
		// file saying why; the task counts as ended.
		r.mu.Lock()
		t.ended = true
		r.mu.Unlock()
		return time.Time{}, fmt.Errorf("exec: starting task %s: %w", spec.ID, err)
	}
	return startedAt, nil
}

// launch starts the supervisor and waits for its start-up line.
func (r *Runner) launch(t *task, spec TaskSpec) (time.Time, error) {
	data, err := json.Marshal(supervisorSpec{Version: specVersion, Task: spec, Cgroup: t.cg})
	if err != nil {
		return time.Time{}, err
	}
	// 0600: the environment may hold secrets.
	if err := os.WriteFile(filepath.Join(t.dir, specFile), data, 0o600); err != nil {
		return time.Time{}, r.lost(t, fmt.Sprintf("writing spec: %v", err))
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return time.Time{}, r.lost(t, fmt.Sprintf("pipe: %v", err))
	}
	argv := append(slices.Clip(r.command), t.dir)
	var proc *os.Process
	withChildTimerSlack(func() {
		proc, err = os.StartProcess(argv[0], argv, &os.ProcAttr{
			Files: []*os.File{r.devnull, r.supLog, r.supLog, pw},
			// Its own session: the supervisor outlives the agent and never
			// gets the agent's terminal signals.
			Sys: &syscall.SysProcAttr{Setsid: true},
		})
	})
	pw.Close()
	if err != nil {
		pr.Close()
		return time.Time{}, r.lost(t, fmt.Sprintf("starting supervisor %s: %v", argv[0], err))
	}
	_ = pr.SetReadDeadline(time.Now().Add(handshakeTimeout))
	line, rerr := io.ReadAll(io.LimitReader(pr, 4096))
	pr.Close()
	startedAt, failure, herr := decodeHandshake(line)
	if rerr != nil || herr != nil || failure != "" {
		if rerr != nil {
			_ = proc.Kill() // wedged: give up on it
		}
		state, _ := proc.Wait()
		switch {
		case failure != "":
			return time.Time{}, errors.New(failure)
		case rerr != nil:
			return time.Time{}, r.lost(t, fmt.Sprintf("supervisor did not report start-up: %v", rerr))
		default:
			return time.Time{}, r.lost(t, fmt.Sprintf("supervisor failed (%v): %s", state, logTail(filepath.Join(r.dir, supervisorLog), t.dir)))
		}
	}
	w, err := openPidWatch(proc.Pid)
	if err != nil {
		// Only fd exhaustion gets here (the child is not reaped, its pid is
		// valid). The task runs on; its status file will say how it ended.
		_ = proc.Release()
		return time.Time{}, err
	}
	// Our pidfd watches and reaps it from now on; drop the os.Process's own
	// pidfd so a running task costs one descriptor.
	_ = proc.Release()
	r.mu.Lock()
	t.watch, t.child, t.startedAt = w, true, startedAt
	r.mu.Unlock()
	r.follow(t)
	return startedAt, nil
}

// follow waits in the background for t's supervisor to exit and reports the
// result.
func (r *Runner) follow(t *task) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.watchers.Add(1)
	w, child := t.watch, t.child
	r.mu.Unlock()
	go func() {
		defer r.watchers.Done()
		if err := w.wait(); err != nil {
			return // closed by Close
		}
		if child {
			if err := w.reap(); err != nil {
				r.log.Warn("reaping supervisor", "task", t.id, "err", err)
			}
		}
		res, ok, err := readStatus(t.dir)
		if !ok || err != nil {
			msg := "supervisor exited without recording a result"
			if err != nil {
				msg = err.Error()
			}
			_ = r.lost(t, msg)
			res, _, _ = readStatus(t.dir)
		}
		r.mu.Lock()
		t.watch = nil
		r.mu.Unlock()
		_ = w.close()
		r.push(t, res)
	}()
}

// stopTaskMode writes the stop file (the grace) and signals the supervisor.
func (r *Runner) stopTaskMode(t *task, grace time.Duration) error {
	r.mu.Lock()
	w, ended := t.watch, t.ended
	r.mu.Unlock()
	if ended || w == nil {
		return nil
	}
	if grace == 0 {
		grace = t.grace
	}
	if err := writeAtomic(filepath.Join(t.dir, stopFile), []byte(strconv.FormatInt(int64(grace), 10))); err != nil {
		return fmt.Errorf("exec: Stop %s: %w", t.id, err)
	}
	if err := w.signal(syscall.SIGTERM); err != nil {
		r.mu.Lock()
		ended, closed := t.ended, r.closed
		r.mu.Unlock()
		switch {
		case ended:
			return nil // it ended while we were signalling
		case closed:
			return ErrClosed
		}
		return fmt.Errorf("exec: Stop %s: signalling supervisor: %w", t.id, err)
	}
	return nil
}
