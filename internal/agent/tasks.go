package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/exec"
)

// Allocation status and desired values as they travel on the wire.
const (
	statusAssigned = "assigned"
	statusRunning  = "running"
	statusExited   = "exited"
	statusFailed   = "failed"
	statusLost     = "lost"
	desiredRun     = "run"
	desiredStop    = "stop"
)

// exitLaunchFailed is the exit code reported for a task that could not be
// set up at all (as `docker run` uses it). A command that cannot be run is
// exec's to report: 127 (not found) or 126 (not executable).
const exitLaunchFailed = 125

type taskState uint8

const (
	taskStarting taskState = iota // Start in flight
	taskRunning
	taskEnded // its end (or failure to start) has been queued for the servers
)

// task is the agent's record of one allocation it acted on. The record is
// what makes "start at most once" hold: an allocation ID with a record is
// never started again by this process, and exec refuses to start an ID whose
// directory exists, which covers earlier processes.
type task struct {
	state      taskState
	memLimit   int64
	walltime   time.Duration
	startedAt  time.Time
	stopWanted bool          // the servers want it stopped (or no longer list it)
	stopReason string        // DesiredReason, for the exit message
	stopGrace  time.Duration // the allocation's StopGrace; 0: Config.KillGrace
	silent     bool          // the servers no longer list it: its end is not reported
	adopted    bool          // started by an earlier agent process
	sentRun    bool          // "running" has been queued for the servers
	early      *exec.Result
	endedAt    time.Time
}

func newTask(a *api.Allocation, st taskState) *task {
	return &task{state: st, memLimit: a.Resources.MemoryBytes, walltime: time.Duration(a.Walltime)}
}

// track records a task; a.mu is held.
func (a *Agent) track(id string, t *task) {
	a.tasks[id] = t
	if t.state != taskEnded {
		a.live[id] = t
	}
}

// markEnded records that a task has ended (or will never run); a.mu is held.
func (a *Agent) markEnded(id string, t *task, at time.Time) {
	t.state, t.endedAt = taskEnded, at
	delete(a.live, id)
	a.noteEnded()
}

// reconcile acts on one answer of the allocation watch: start what should
// run and has not been started, stop what should stop. allocs are live
// allocations of this node: the whole list, or those that changed. ended
// are allocations the servers have ended (a changes answer); a live task
// among them is one the servers consider finished (e.g. marked lost while
// this node was away), and it is stopped without a report. checkOrphans is
// set when allocs is the whole list and at least as new as every earlier
// answer: then a live task missing from it is such a task too.
func (a *Agent) reconcile(allocs []api.Allocation, ended []string, checkOrphans bool) {
	var toStart, toAdopt []*api.Allocation
	var toStop []string
	var updates []api.AllocUpdate
	now := time.Now()

	a.mu.Lock()
	listed := make(map[string]bool, len(allocs))
	for i := range allocs {
		al := &allocs[i]
		if al.Node != "" && al.Node != a.cfg.Name {
			continue // not ours; a server bug, but starting it would be worse
		}
		listed[al.ID] = true
		t := a.tasks[al.ID]
		switch al.Desired {
		case desiredRun:
			if t != nil {
				if t.adopted {
					t.memLimit, t.walltime = al.Resources.MemoryBytes, time.Duration(al.Walltime)
					if t.state == taskRunning && !t.sentRun && (al.Status == "" || al.Status == statusAssigned) {
						// Started by an earlier agent process that died
						// before it could say so.
						t.sentRun = true
						updates = append(updates, api.AllocUpdate{AllocID: al.ID, Node: a.cfg.Name, Status: statusRunning, StartedAt: t.startedAt})
					}
				}
				continue
			}
			if al.Status != "" && al.Status != statusAssigned {
				// The servers think an earlier agent process started it:
				// look for it, never start it a second time.
				a.track(al.ID, newTask(al, taskStarting))
				toAdopt = append(toAdopt, al)
				continue
			}
			a.track(al.ID, newTask(al, taskStarting))
			toStart = append(toStart, al)
		case desiredStop:
			switch {
			case t == nil && (al.Status == "" || al.Status == statusAssigned):
				t = newTask(al, taskEnded)
				t.endedAt = now
				a.track(al.ID, t)
				updates = append(updates, api.AllocUpdate{
					AllocID: al.ID, Node: a.cfg.Name, Status: statusFailed, FinishedAt: now,
					Message: stopMessage("stopped before it started", al.DesiredReason),
				})
			case t == nil:
				t = newTask(al, taskStarting)
				t.stopWanted, t.stopReason, t.stopGrace = true, al.DesiredReason, time.Duration(al.StopGrace)
				a.track(al.ID, t)
				toAdopt = append(toAdopt, al)
			case !t.stopWanted:
				t.stopWanted, t.stopReason, t.stopGrace = true, al.DesiredReason, time.Duration(al.StopGrace)
				if t.state == taskRunning {
					toStop = append(toStop, al.ID)
				}
				// taskStarting: the starter stops it once Start returns.
			}
		default:
			a.log.Warn("allocation has an unknown desired state; ignoring it", "alloc", al.ID, "desired", al.Desired)
		}
	}
	orphan := func(id string, t *task) {
		if t.stopWanted {
			return
		}
		a.log.Warn("stopping a task the servers no longer assign to this node", "alloc", id)
		t.stopWanted, t.silent = true, true
		t.stopReason = "no longer assigned to this node"
		if t.state == taskRunning {
			toStop = append(toStop, id)
		}
	}
	if checkOrphans {
		for id, t := range a.live {
			if !listed[id] {
				orphan(id, t)
			}
		}
	}
	for _, id := range ended {
		if t := a.live[id]; t != nil {
			orphan(id, t)
		}
	}
	if len(updates) > 0 {
		a.updates.push(updates...)
	}
	a.mu.Unlock()

	for _, al := range toStart {
		a.startTask(al)
	}
	for _, al := range toAdopt {
		a.adopt(al, false)
	}
	for _, id := range toStop {
		a.stopTask(id)
	}
}

// startTask starts one allocation in the background; the semaphore keeps a
// burst of placements from forking hundreds of supervisors at once.
func (a *Agent) startTask(al *api.Allocation) {
	a.starts.Go(func() {
		a.startSem <- struct{}{}
		defer func() { <-a.startSem }()
		a.runStart(al)
	})
}

func (a *Agent) runStart(al *api.Allocation) {
	spec, err := taskSpec(&a.cfg, al)
	var startedAt time.Time
	if err == nil {
		startedAt, err = a.runner.Start(spec)
	}
	switch {
	case errors.Is(err, exec.ErrAlreadyStarted):
		a.adopt(al, true)
		return
	case err != nil:
		a.log.Warn("task failed to start", "alloc", al.ID, "err", err)
		now := time.Now()
		a.mu.Lock()
		t := a.tasks[al.ID]
		a.markEnded(al.ID, t, now)
		if !t.silent {
			a.updates.push(api.AllocUpdate{
				AllocID: al.ID, Node: a.cfg.Name, Status: statusFailed,
				ExitCode: exitLaunchFailed, Message: err.Error(), FinishedAt: now,
			})
		}
		a.mu.Unlock()
		return
	}
	a.log.Debug("task started", "alloc", al.ID)
	a.mu.Lock()
	t := a.tasks[al.ID]
	t.state, t.startedAt, t.sentRun = taskRunning, startedAt, true
	if !t.silent {
		a.updates.push(api.AllocUpdate{AllocID: al.ID, Node: a.cfg.Name, Status: statusRunning, StartedAt: startedAt})
	}
	if t.early != nil {
		a.finishLocked(al.ID, t, *t.early)
	}
	stop := t.stopWanted && t.state == taskRunning
	a.mu.Unlock()
	if stop {
		a.stopTask(al.ID)
	}
}

// adopt takes over an allocation that an earlier agent process started:
// report its end if it has ended, watch it if it still runs, and report it
// failed if this node has no trace of it (its directory is gone). dirKnown
// says exec already reported the directory exists.
func (a *Agent) adopt(al *api.Allocation, dirKnown bool) {
	res, finished := a.runner.Finished(al.ID)
	exists := dirKnown || finished || a.taskDirExists(al.ID)
	now := time.Now()

	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.tasks[al.ID]
	t.adopted = true
	switch {
	case !exists:
		a.markEnded(al.ID, t, now)
		if !t.silent {
			a.updates.push(api.AllocUpdate{
				AllocID: al.ID, Node: a.cfg.Name, Status: statusFailed, ExitCode: exitLaunchFailed, FinishedAt: now,
				Message: "lost: this node has no record of the task (its task directory is gone)",
			})
		}
		return
	case finished:
		t.state, t.sentRun = taskRunning, true
		if al.Status == "" || al.Status == statusAssigned {
			a.updates.push(api.AllocUpdate{AllocID: al.ID, Node: a.cfg.Name, Status: statusRunning, StartedAt: res.StartedAt})
		}
		a.finishLocked(al.ID, t, res)
		return
	}
	a.log.Info("adopted a task started by an earlier agent process", "alloc", al.ID)
	t.state, t.sentRun = taskRunning, true
	t.startedAt = a.taskStartTime(al.ID)
	if al.Status == "" || al.Status == statusAssigned {
		a.updates.push(api.AllocUpdate{AllocID: al.ID, Node: a.cfg.Name, Status: statusRunning, StartedAt: t.startedAt})
	}
	if t.stopWanted {
		a.stopTask(al.ID)
	}
}

func (a *Agent) taskDirExists(id string) bool {
	_, err := os.Stat(a.runner.LogPath(id, "stdout"))
	return err == nil
}

// taskStartTime estimates when an adopted, still running task started: its
// directory's entries are all made as it starts, so the directory's
// modification time is close (a stop request may move it later).
func (a *Agent) taskStartTime(id string) time.Time {
	fi, err := os.Stat(filepath.Dir(a.runner.LogPath(id, "stdout")))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// stopTask asks exec to stop a task (SIGTERM, grace, SIGKILL); its end
// arrives as a normal exec event. The grace is the allocation's StopGrace
// (a preempted task's time to checkpoint) when the servers set one, else
// Config.KillGrace.
// Callers may hold a.mu.
func (a *Agent) stopTask(id string) {
	a.starts.Go(func() {
		grace := a.cfg.KillGrace
		a.mu.Lock()
		if t := a.tasks[id]; t != nil && t.stopGrace > 0 {
			grace = t.stopGrace
		}
		a.mu.Unlock()
		err := a.runner.Stop(id, grace)
		switch {
		case err == nil:
		case errors.Is(err, exec.ErrUnknownTask):
			// Already ended and cleaned up, or never known to this runner.
			if res, ok := a.runner.Finished(id); ok {
				a.taskEnded(id, res)
				return
			}
			a.log.Warn("cannot stop task: exec does not know it", "alloc", id)
		default:
			a.log.Warn("stopping task failed", "alloc", id, "err", err)
		}
	})
}

// taskEnded handles a task's end as exec reports it. Duplicates are ignored.
func (a *Agent) taskEnded(id string, res exec.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.tasks[id]
	if t == nil {
		// A task from an earlier agent process that the watch has not listed
		// (yet). Report it: the servers ignore reports on allocations they
		// consider finished.
		t = &task{state: taskRunning, adopted: true}
		a.track(id, t)
	}
	switch t.state {
	case taskStarting:
		t.early = &res // Start has not returned yet; it reports "running" first
	case taskRunning:
		a.finishLocked(id, t, res)
	}
}

// finishLocked records a task's end and queues its report. a.mu is held.
func (a *Agent) finishLocked(id string, t *task, res exec.Result) {
	t.early = nil
	ended := res.FinishedAt
	if ended.IsZero() {
		ended = time.Now()
	}
	a.markEnded(id, t, ended)
	if t.silent {
		return
	}
	u := api.AllocUpdate{
		AllocID: id, Node: a.cfg.Name, Status: statusExited,
		ExitCode: res.ExitCode, Signal: res.Signal, OOMKilled: res.OOMKilled, TimedOut: res.TimedOut, Stopped: res.Stopped,
		StartedAt: res.StartedAt, FinishedAt: t.endedAt,
		Message: exitMessage(res, t.memLimit, t.walltime, t.stopReason),
	}
	if u.StartedAt.IsZero() {
		u.StartedAt = t.startedAt
	}
	if res.StartErr != "" {
		u.Status = statusFailed
		if u.ExitCode == 0 {
			u.ExitCode = exitLaunchFailed
		}
	}
	a.updates.push(u)
}

// taskDone reports whether a task has ended, for the log follower.
func (a *Agent) taskDone(id string) bool {
	a.mu.Lock()
	t := a.tasks[id]
	a.mu.Unlock()
	if t != nil && t.state == taskEnded {
		return true
	}
	if t != nil && t.state == taskStarting {
		return false
	}
	_, ok := a.runner.Finished(id)
	return ok
}

func stopMessage(prefix, reason string) string {
	if reason == "" {
		return prefix
	}
	return fmt.Sprintf("%s: %s", prefix, reason)
}
