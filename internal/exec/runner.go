package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// handshakeTimeout bounds how long Start waits for a supervisor to report.
// It is far above any real start-up; it only keeps a wedged supervisor from
// hanging the agent.
const handshakeTimeout = 30 * time.Second

// Runner starts tasks through supervisors and reports when they end. It is
// safe for concurrent use.
type Runner struct {
	dir     string
	command []string // the supervisor command, argv[0] resolved
	cg      cgroupParent
	log     *slog.Logger
	devnull *os.File
	supLog  *os.File // the supervisors' shared stdout/stderr
	events  *eventQueue

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

	// Guarded by Runner.mu.
	watch     *pidWatch // the supervisor; nil once ended
	child     bool      // the supervisor is our child: reap it
	startedAt time.Time
	ended     bool
}

// NewRunner checks cfg, creates cfg.Dir and prepares the cgroup parent.
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
	cwd, _ := os.Getwd()
	bin, err := lookPath(cfg.SupervisorCommand[0], os.Environ(), cwd)
	if err != nil {
		return nil, fmt.Errorf("exec: Config.SupervisorCommand: %w", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, fmt.Errorf("exec: Config.SupervisorCommand: %w", err)
	}
	mode := cfg.Cgroups
	if mode == "" {
		mode = cgroupAuto
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
	cg, err := resolveCgroups(mode, parent)
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
	log.Debug("runner ready", "dir", dir, "cgroups", cg.driver)
	return &Runner{
		dir:     dir,
		command: command,
		cg:      cg,
		log:     log,
		devnull: devnull,
		supLog:  supLog,
		events:  newEventQueue(),
		tasks:   make(map[string]*task),
	}, nil
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

// Start launches the supervisor for spec and returns once the task's process
// has started. A command that cannot be executed (missing binary, not
// executable, missing work dir) is a task outcome, not an error: Start
// succeeds and the task ends at once with Result.StartErr and exit code 127
// (126 when the file is not executable), as a shell would report. Start
// returns an error only when nothing was started; no TaskEvent follows then.
func (r *Runner) Start(spec TaskSpec) (time.Time, error) {
	if err := validateSpec(spec); err != nil {
		return time.Time{}, err
	}
	t := &task{
		id:      spec.ID,
		dir:     filepath.Join(r.dir, spec.ID),
		cg:      r.cg.forTask(spec.ID),
		grace:   killGrace(spec, -1),
		started: make(chan struct{}),
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

	if err := os.Mkdir(t.dir, 0o755); err != nil {
		r.mu.Lock()
		delete(r.tasks, spec.ID)
		r.mu.Unlock()
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
	proc, err := os.StartProcess(argv[0], argv, &os.ProcAttr{
		Files: []*os.File{r.devnull, r.supLog, r.supLog, pw},
		// Its own session: the supervisor outlives the agent and never gets
		// the agent's terminal signals.
		Sys: &syscall.SysProcAttr{Setsid: true},
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
		t.ended, t.watch = true, nil
		closed := r.closed
		r.mu.Unlock()
		_ = w.close()
		if !closed {
			r.events.push(TaskEvent{ID: t.id, Result: res})
		}
	}()
}

// lost handles a supervisor that died without recording a result (killed, or
// failed before it could): it kills whatever is left of the task, removes
// its cgroup and scratch directory, and records ExitCode -1. It returns the
// message as an error for Start's use.
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
	res := Result{ExitCode: -1, StartedAt: startedAt, FinishedAt: time.Now()}
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
	w, ended := t.watch, t.ended
	r.mu.Unlock()
	if ended || w == nil {
		return nil
	}
	if grace == 0 {
		grace = t.grace
	}
	if err := writeAtomic(filepath.Join(t.dir, stopFile), []byte(strconv.FormatInt(int64(grace), 10))); err != nil {
		return fmt.Errorf("exec: Stop %s: %w", id, err)
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
		return fmt.Errorf("exec: Stop %s: signalling supervisor: %w", id, err)
	}
	return nil
}

// Events delivers one TaskEvent per task when it ends (tasks started by Start
// and running tasks found by Recover). The channel is closed by Close.
func (r *Runner) Events() <-chan TaskEvent { return r.events.out }

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
		if _, ok, _ := readStatus(dir); !ok && supervisorAlive(dir) {
			return fmt.Errorf("%w: %s", ErrTaskRunning, id)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("exec: Remove %s: %w", id, err)
	}
	r.mu.Lock()
	if r.tasks[id] == t {
		delete(r.tasks, id)
	}
	r.mu.Unlock()
	return nil
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
// tasks: they run on, and a new Runner can Recover them.
func (r *Runner) Close() error {
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
	r.events.close()
	return errors.Join(r.devnull.Close(), r.supLog.Close())
}
