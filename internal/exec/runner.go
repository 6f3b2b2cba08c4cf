package exec

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrAlreadyStarted: a task with this ID has a directory already; a task
	// is started at most once.
	ErrAlreadyStarted = errors.New("exec: task already started")
	// ErrUnknownTask: this runner neither started nor recovered the task.
	ErrUnknownTask = errors.New("exec: unknown task")
	// ErrTaskRunning: the task has not ended yet (Remove).
	ErrTaskRunning = errors.New("exec: task is still running")
	// ErrClosed: the runner was closed.
	ErrClosed = errors.New("exec: runner is closed")
)

// Supervisor modes (Config.Supervisor).
const (
	SupervisorNode = "node" // one long-lived supervisor daemon per Dir
	SupervisorTask = "task" // one supervisor process per task
)

// handshakeTimeout bounds how long Start waits for a supervisor to report.
// It is far above any real start-up; it only keeps a wedged supervisor from
// hanging the agent.
const handshakeTimeout = 30 * time.Second

// Runner starts tasks through supervisors and reports when they end. It is
// safe for concurrent use.
type Runner struct {
	dir     string
	mode    string   // SupervisorNode or SupervisorTask
	command []string // the supervisor command, argv[0] resolved
	cg      cgroupParent
	log     *slog.Logger
	devnull *os.File
	supLog  *os.File // the supervisors' shared stdout/stderr
	events  *eventQueue
	node    *nodeClient // node mode

	mu       sync.Mutex
	tasks    map[string]*task
	closed   bool
	watchers sync.WaitGroup
}

// task is what the runner knows about one task it started or recovered.
type task struct {
	id      string
	dir     string
	cg      cgroupSpec
	grace   time.Duration // resolved KillGrace, for Stop(id, 0)
	started chan struct{} // closed when Start (or Recover) is done with it
	node    bool          // supervised by the node daemon (else by its own supervisor)

	// Guarded by Runner.mu.
	watch     *pidWatch // task mode: the supervisor; nil once ended
	child     bool      // task mode: the supervisor is our child: reap it
	inflight  bool      // node mode: Start has not learned the outcome yet
	startedAt time.Time
	ended     bool
}

// NewRunner checks cfg, creates cfg.Dir and prepares the cgroup parent. In
// node mode it connects to the Dir's supervisor daemon, starting one if
// none runs.
func NewRunner(cfg Config) (*Runner, error) {
	if cfg.Dir == "" {
		return nil, errors.New("exec: Config.Dir: must be set")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("exec: Config.Dir: %w", err)
	}
	if len(cfg.SupervisorCommand) == 0 || cfg.SupervisorCommand[0] == "" {
		return nil, errors.New("exec: Config.SupervisorCommand: must name the dure binary, e.g. [/usr/bin/dure supervise]")
	}
	mode := cfg.Supervisor
	switch mode {
	case "":
		mode = SupervisorNode
	case SupervisorNode, SupervisorTask:
	default:
		return nil, fmt.Errorf("exec: Config.Supervisor: must be %q or %q, got %q", SupervisorNode, SupervisorTask, mode)
	}
	cwd, _ := os.Getwd()
	bin, err := lookPath(cfg.SupervisorCommand[0], os.Environ(), cwd)
	if err != nil {
		return nil, fmt.Errorf("exec: Config.SupervisorCommand: %w", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, fmt.Errorf("exec: Config.SupervisorCommand: %w", err)
	}
	cgMode := cfg.Cgroups
	if cgMode == "" {
		cgMode = cgroupAuto
	}
	parent := cfg.CgroupParent
	if parent == "" {
		parent = "dure"
	}
	if err := validCgroupParent(parent); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("exec: Config.Dir: %w", err)
	}
	cg, err := resolveCgroups(cgMode, parent)
	if err != nil {
		return nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	// One log for all supervisors (their own errors, rarely written): a file
	// per task would cost an inode per task for nothing.
	supLog, err := os.OpenFile(filepath.Join(dir, supervisorLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		devnull.Close()
		return nil, fmt.Errorf("exec: Config.Dir: %w", err)
	}
	command := append([]string{bin}, cfg.SupervisorCommand[1:]...)
	log = log.With("component", "exec")
	r := &Runner{
		dir:     dir,
		mode:    mode,
		command: command,
		cg:      cg,
		log:     log,
		devnull: devnull,
		supLog:  supLog,
		events:  newEventQueue(),
		tasks:   make(map[string]*task),
	}
	if mode == SupervisorNode {
		r.node = &nodeClient{
			dir:     dir,
			command: append(append([]string(nil), command...), nodeFlag, dir),
			devnull: devnull,
			supLog:  supLog,
			log:     log,
			onEvent: r.nodeEnded,
			resync:  r.resyncNode,
		}
		if err := dialNode(r.node); err != nil {
			r.events.close()
			devnull.Close()
			supLog.Close()
			return nil, err
		}
	}
	log.Debug("runner ready", "dir", dir, "cgroups", cg.driver, "supervisor", mode)
	return r, nil
}

// validCgroupParent accepts a relative path of [A-Za-z0-9._-]+ components.
func validCgroupParent(p string) error {
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("exec: Config.CgroupParent: must be relative to the hierarchy root, got %q", p)
	}
	for _, part := range strings.Split(p, "/") {
		if err := validID(part); err != nil {
			return fmt.Errorf("exec: Config.CgroupParent: each path element must match [A-Za-z0-9._-]+ and not be . or .., got %q", p)
		}
	}
	return nil
}

// CgroupDriver says which cgroup driver the runner uses: "v1", "v2" or "off".
func (r *Runner) CgroupDriver() string { return r.cg.driver }

// SupervisorMode says which supervisor mode the runner uses: "node" or "task".
func (r *Runner) SupervisorMode() string { return r.mode }

// Start launches the task and returns once its process has started (in
// node mode: right after the daemon's fork/exec returned). A command that
// cannot be executed (missing binary, not executable, missing work dir) is
// a task outcome, not an error: Start succeeds and the task ends at once
// with Result.StartErr and exit code 127 (126 when the file is not
// executable), as a shell would report. Start returns an error only when
// nothing was started; no TaskEvent follows then.
func (r *Runner) Start(spec TaskSpec) (time.Time, error) {
	if err := validateSpec(spec); err != nil {
		return time.Time{}, err
	}
	t := &task{
		id:       spec.ID,
		dir:      filepath.Join(r.dir, spec.ID),
		cg:       r.cg.forTask(spec.ID),
		grace:    killGrace(spec, -1),
		started:  make(chan struct{}),
		node:     r.node != nil,
		inflight: r.node != nil,
	}
	defer close(t.started)
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return time.Time{}, ErrClosed
	case r.tasks[spec.ID] != nil:
		r.mu.Unlock()
		return time.Time{}, fmt.Errorf("%w: %s", ErrAlreadyStarted, spec.ID)
	}
	r.tasks[spec.ID] = t
	r.mu.Unlock()
	if t.node {
		return r.startNode(t, spec)
	}
	return r.startTaskMode(t, spec)
}

// forget drops a task that was never started.
func (r *Runner) forget(t *task) {
	r.mu.Lock()
	if r.tasks[t.id] == t {
		delete(r.tasks, t.id)
	}
	r.mu.Unlock()
}

// lost handles a task whose supervisor died without recording a result
// (killed, or failed before it could): it kills whatever is left of the
// task, removes its cgroup and scratch directory, and records ExitCode -1.
// It returns the message as an error for Start's use.
func (r *Runner) lost(t *task, msg string) error {
	r.log.Warn("task supervisor lost", "task", t.id, "reason", msg)
	if err := killCgroup(t.cg); err != nil {
		r.log.Error("killing leftover task processes", "task", t.id, "err", err)
	}
	if err := removeCgroup(t.cg); err != nil {
		r.log.Error("removing task cgroup", "task", t.id, "err", err)
	}
	_ = os.RemoveAll(filepath.Join(t.dir, scratchDir))
	r.mu.Lock()
	startedAt := t.startedAt
	r.mu.Unlock()
	res := Result{ExitCode: -1, Lost: msg, StartedAt: startedAt, FinishedAt: time.Now()}
	if startedAt.IsZero() {
		res.StartErr = msg
		res.StartedAt = res.FinishedAt
	}
	if err := writeStatus(t.dir, res); err != nil {
		r.log.Error("writing status", "task", t.id, "err", err)
	}
	return errors.New(msg)
}

// logTail returns the last lines the supervisors' shared log has about
// taskDir, for error messages.
func logTail(path, taskDir string) string {
	f, err := os.Open(path)
	if err != nil {
		return "no supervisor log"
	}
	defer f.Close()
	const window = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > window {
		_, _ = f.Seek(st.Size()-window, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	var mine []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, taskDir) {
			mine = append(mine, l)
		}
	}
	if len(mine) == 0 {
		return "see " + path
	}
	return strings.Join(mine[max(0, len(mine)-3):], "; ")
}

// Stop asks the task to end: SIGTERM to its process group, SIGKILL after
// grace (0 means the task's KillGrace). Its TaskEvent then has
// Result.Stopped set (unless it had already timed out). Stopping a task that
// has ended is not an error.
func (r *Runner) Stop(id string, grace time.Duration) error {
	if grace < 0 {
		return fmt.Errorf("exec: Stop: grace must be >= 0, got %s", grace)
	}
	r.mu.Lock()
	t := r.tasks[id]
	r.mu.Unlock()
	if t == nil {
		return fmt.Errorf("%w: %s", ErrUnknownTask, id)
	}
	<-t.started
	r.mu.Lock()
	ended := t.ended
	r.mu.Unlock()
	if ended {
		return nil
	}
	if t.node {
		return r.stopNode(t, grace)
	}
	return r.stopTaskMode(t, grace)
}

// Events delivers one TaskEvent per task when it ends (tasks started by Start
// and running tasks found by Recover). The channel is closed by Close.
func (r *Runner) Events() <-chan TaskEvent { return r.events.out }

// push reports t's end once (whoever marks it ended first reports it).
func (r *Runner) push(t *task, res Result) {
	r.mu.Lock()
	if t.ended {
		r.mu.Unlock()
		return
	}
	t.ended, t.inflight = true, false
	closed := r.closed
	r.mu.Unlock()
	if !closed {
		r.events.push(TaskEvent{ID: t.id, Result: res})
	}
}

// LogPath is the path of a task's "stdout" or "stderr" file (it exists from
// Start on); "" for an invalid ID or stream.
func (r *Runner) LogPath(id, stream string) string {
	if validID(id) != nil || (stream != stdoutFile && stream != stderrFile) {
		return ""
	}
	return filepath.Join(r.dir, id, stream)
}

// Finished reads the task's status file: whether it has ended, and how.
func (r *Runner) Finished(id string) (Result, bool) {
	if validID(id) != nil {
		return Result{}, false
	}
	res, ok, err := readStatus(filepath.Join(r.dir, id))
	if err != nil {
		r.log.Warn("unreadable status file", "task", id, "err", err)
		return Result{}, false
	}
	return res, ok
}

// Remove deletes the task's directory (its logs). It refuses while the task
// runs.
func (r *Runner) Remove(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	dir := filepath.Join(r.dir, id)
	r.mu.Lock()
	t := r.tasks[id]
	r.mu.Unlock()
	if t != nil {
		<-t.started
		r.mu.Lock()
		ended := t.ended
		r.mu.Unlock()
		if !ended {
			return fmt.Errorf("%w: %s", ErrTaskRunning, id)
		}
	} else {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrUnknownTask, id)
		}
		if _, ok, _ := readStatus(dir); !ok && r.runningElsewhere(id, dir) {
			return fmt.Errorf("%w: %s", ErrTaskRunning, id)
		}
	}
	if err := removeTaskDir(dir); err != nil {
		return fmt.Errorf("exec: Remove %s: %w", id, err)
	}
	r.mu.Lock()
	if r.tasks[id] == t {
		delete(r.tasks, id)
	}
	r.mu.Unlock()
	return nil
}

// runningElsewhere reports whether a task this runner does not know, with
// no status file, is running: under its own supervisor, or the daemon.
func (r *Runner) runningElsewhere(id, dir string) bool {
	if supervisorAlive(dir) {
		return true
	}
	if r.node == nil {
		return false
	}
	rep, err := r.node.call(request{Op: opQuery, ID: id}, nil)
	return err != nil || rep.State != ""
}

// supervisorAlive reports whether the supervisor named in dir's pid file is
// running.
func supervisorAlive(dir string) bool {
	pid, ok := readPid(dir)
	return ok && isSupervisorOf(pid, dir)
}

func readPid(dir string) (int, bool) {
	data, err := readSmall(filepath.Join(dir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid, err == nil && pid > 0
}

// Close stops watching tasks and closes the Events channel. It does not stop
// tasks: they run on, and a new Runner can Recover them. In node mode it
// disconnects from the daemon, which keeps running while it has tasks (and
// exits when it has neither tasks nor clients).
func (r *Runner) Close() error {
	return r.close(func() {
		if r.node != nil {
			r.node.close()
		}
	})
}

func (r *Runner) close(disconnect func()) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var watches []*pidWatch
	for _, t := range r.tasks {
		if t.watch != nil {
			watches = append(watches, t.watch)
		}
	}
	r.mu.Unlock()
	for _, w := range watches {
		_ = w.close()
	}
	r.watchers.Wait()
	disconnect()
	r.events.close()
	return errors.Join(r.devnull.Close(), r.supLog.Close())
}

// Shutdown ends supervision for good, for `dure dev`'s temporary clusters,
// tests and binary upgrades; an agent restart must use Close instead. With
// kill, every running task this runner can reach is killed (SIGKILL, no
// grace) and recorded first. In node mode the daemon then exits: without
// kill its running tasks keep running unsupervised until a later daemon
// adopts them (and can no longer learn their exit status). Shutdown closes
// the runner; it waits until the daemon process has exited.
func (r *Runner) Shutdown(kill bool) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	var taskMode []*task
	for _, t := range r.tasks {
		if !t.node {
			taskMode = append(taskMode, t)
		}
	}
	r.mu.Unlock()
	var errs []error
	if kill {
		for _, t := range taskMode {
			<-t.started
			if err := r.stopTaskMode(t, time.Nanosecond); err != nil && !errors.Is(err, ErrClosed) {
				errs = append(errs, err)
			}
		}
		deadline := time.Now().Add(time.Minute)
		for _, t := range taskMode {
			for time.Now().Before(deadline) {
				r.mu.Lock()
				ended := t.ended
				r.mu.Unlock()
				if ended {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	errs = append(errs, r.close(func() {
		if r.node == nil {
			return
		}
		rep, err := r.node.call(request{Op: opShutdown, Kill: kill}, r.node.markClosing)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("exec: Shutdown: %w", err))
			r.node.finish(false)
		case rep.Err != "":
			errs = append(errs, fmt.Errorf("exec: Shutdown: %s", rep.Err))
			r.node.finish(false)
		default:
			r.node.finish(true)
		}
	}))
	return errors.Join(errs...)
}
