package exec

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Node mode, the runner's side: requests to the Dir's supervisor daemon.

// startNode asks the daemon to start t. If the connection breaks before
// the reply, the daemon may or may not have started the task; settleStart
// finds out from the daemon that answers next (the same or a new one).
func (r *Runner) startNode(t *task, spec TaskSpec) (time.Time, error) {
	req := request{Op: opStart, Task: &spec, Cgroup: &t.cg}
	onReply := func(rep *reply) {
		// In the reader, before the task's end event can be handled.
		if rep.Err == "" {
			r.mu.Lock()
			t.startedAt, t.inflight = rep.StartedAt, false
			r.mu.Unlock()
		}
	}
	deadline := time.Now().Add(connectTimeout)
	for {
		rep, err := r.node.call(req, onReply)
		if errors.Is(err, errConnLost) && time.Now().Before(deadline) {
			at, started, err := r.settleStart(t)
			if err != nil || started {
				return at, err
			}
			continue // the daemon never saw it: ask again
		}
		if err != nil {
			r.forget(t)
			return time.Time{}, fmt.Errorf("exec: starting task %s: %w", spec.ID, err)
		}
		switch rep.Code {
		case "":
			if rep.Err == "" {
				return rep.StartedAt, nil
			}
		case codeAlreadyStarted:
			r.forget(t)
			return time.Time{}, fmt.Errorf("%w: %s (%s)", ErrAlreadyStarted, spec.ID, rep.Err)
		case codeSetup:
			// Nothing runs; the status file says why and the directory
			// stays, so the ID is used up.
			r.mu.Lock()
			t.ended, t.inflight = true, false
			r.mu.Unlock()
			return time.Time{}, fmt.Errorf("exec: starting task %s: %s", spec.ID, rep.Err)
		case codeExiting:
			// The daemon is going away; the next one takes the request.
			if time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
				continue
			}
		}
		r.forget(t)
		return time.Time{}, fmt.Errorf("exec: starting task %s: supervisor daemon: %s", spec.ID, rep.Err)
	}
}

// settleStart learns what became of a start whose reply was lost: running
// (started), ended already (started; its event is sent), never seen (not
// started: the caller asks again), or half-done by a daemon that died (lost:
// recorded with ExitCode -1, counted as started so its event follows).
func (r *Runner) settleStart(t *task) (at time.Time, started bool, err error) {
	var rep reply
	for range 3 {
		rep, err = r.node.call(request{Op: opQuery, ID: t.id}, nil)
		if !errors.Is(err, errConnLost) {
			break
		}
	}
	if err != nil {
		r.forget(t)
		return time.Time{}, false, fmt.Errorf("exec: starting task %s: %w", t.id, err)
	}
	switch rep.State {
	case stateRunning:
		r.mu.Lock()
		t.startedAt, t.inflight = rep.StartedAt, false
		r.mu.Unlock()
		return rep.StartedAt, true, nil
	case stateStarting:
		r.forget(t)
		return time.Time{}, false, fmt.Errorf("%w: %s (another runner is starting it)", ErrAlreadyStarted, t.id)
	}
	if res, ok, _ := readStatus(t.dir); ok {
		if strings.HasPrefix(res.StartErr, "setup: ") {
			r.mu.Lock()
			t.ended, t.inflight = true, false
			r.mu.Unlock()
			return time.Time{}, false, fmt.Errorf("exec: starting task %s: %s", t.id, res.StartErr)
		}
		r.mu.Lock()
		t.startedAt = res.StartedAt
		r.mu.Unlock()
		r.push(t, res)
		return res.StartedAt, true, nil
	}
	if _, err := os.Stat(t.dir); errors.Is(err, os.ErrNotExist) {
		return time.Time{}, false, nil
	}
	now := time.Now()
	r.mu.Lock()
	t.startedAt = now
	r.mu.Unlock()
	_ = r.lost(t, "the supervisor daemon died while starting the task")
	res, _, _ := readStatus(t.dir)
	r.push(t, res)
	return now, true, nil
}

// stopNode asks the daemon to stop t (grace 0: the daemon applies the
// task's own KillGrace).
func (r *Runner) stopNode(t *task, grace time.Duration) error {
	var rep reply
	var err error
	for range 3 {
		rep, err = r.node.call(request{Op: opStop, ID: t.id, Grace: grace}, nil)
		if !errors.Is(err, errConnLost) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("exec: Stop %s: %w", t.id, err)
	}
	if rep.Code == codeUnknownTask {
		r.mu.Lock()
		ended := t.ended
		r.mu.Unlock()
		if ended {
			return nil
		}
	}
	if rep.Err != "" {
		return fmt.Errorf("exec: Stop %s: supervisor daemon: %s", t.id, rep.Err)
	}
	return nil
}

// nodeEnded handles the daemon's end event for a task; events for tasks
// this runner did not start or recover are not its business.
func (r *Runner) nodeEnded(id string, res Result) {
	r.mu.Lock()
	t := r.tasks[id]
	r.mu.Unlock()
	if t != nil && t.node {
		r.push(t, res)
	}
}

// resyncNode reconciles the runner's tasks with a daemon reached after the
// connection broke (its list reply). A replacement daemon has recorded, by
// the time it listens, every task of the journal that is no longer running,
// so a task it does not list has ended: its status file says how, or, if
// there is none, it is lost.
func (r *Runner) resyncNode(rep *reply) {
	if rep.Err != "" {
		return
	}
	listed := make(map[string]bool, len(rep.Running)+len(rep.Starting))
	for _, rt := range rep.Running {
		listed[rt.ID] = true
	}
	for _, id := range rep.Starting {
		listed[id] = true
	}
	var gone []*task
	r.mu.Lock()
	for id, t := range r.tasks {
		if t.node && !t.ended && !t.inflight && !listed[id] {
			gone = append(gone, t)
		}
	}
	r.mu.Unlock()
	for _, t := range gone {
		res, ok, _ := readStatus(t.dir)
		if !ok {
			_ = r.lost(t, "the supervisor daemon died and no record of the task survived")
			res, _, _ = readStatus(t.dir)
		}
		r.push(t, res)
	}
}
