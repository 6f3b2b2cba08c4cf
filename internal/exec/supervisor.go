package exec

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// handshakeFD is the descriptor on which the supervisor reports start-up.
const handshakeFD = 3

// SupervisorMain is the entry point of the hidden "dure supervise TASKDIR"
// subcommand: it runs one task as described by TASKDIR/spec.json, reports
// start-up on file descriptor 3, supervises the task until it ends, records
// the Result in TASKDIR/status.json and returns the exit status for the
// supervisor process (0 when the result was recorded, whatever the task did).
//
// Call it before any other start-up work of the binary: its cost is the
// per-task launch cost.
func SupervisorMain(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(args) != 1 || args[0] == "" {
		log.Error("usage: dure supervise TASKDIR (started by the dure agent, not by hand)")
		return 2
	}
	if _, err := unix.FcntlInt(handshakeFD, unix.F_GETFD, 0); err != nil {
		log.Error("supervise: file descriptor 3 (the start-up pipe from the agent) is not open")
		return 2
	}
	// The task must not inherit the pipe, or the runner would see it open
	// for as long as the task runs.
	syscall.CloseOnExec(handshakeFD)
	s := &supervisor{
		dir:       args[0],
		handshake: os.NewFile(handshakeFD, "handshake"),
		log:       log.With("task_dir", args[0]),
	}
	return s.run()
}

type supervisor struct {
	dir       string
	handshake *os.File
	log       *slog.Logger
	spec      supervisorSpec
	result    Result
}

// fail reports a setup failure: no task was started. The status file is
// still written so that the directory always says how things ended.
func (s *supervisor) fail(format string, args ...any) int {
	msg := fmt.Sprintf(format, args...)
	s.log.Error("supervise: setup failed", "err", msg)
	now := time.Now()
	if err := writeStatus(s.dir, Result{ExitCode: -1, StartErr: "setup: " + msg, StartedAt: now, FinishedAt: now}); err != nil {
		s.log.Error("supervise: writing status", "err", err)
	}
	s.report(encodeHandshakeFail(msg))
	return 1
}

// report sends the start-up line to the runner, once. A runner that has died
// meanwhile makes the write fail; the task goes on regardless.
func (s *supervisor) report(line []byte) {
	if s.handshake == nil {
		return
	}
	_, _ = s.handshake.Write(line)
	_ = s.handshake.Close()
	s.handshake = nil
}

func (s *supervisor) run() int {
	// SIGTERM is how Stop reaches us; catch it before anything can send it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM)

	if err := os.WriteFile(filepath.Join(s.dir, pidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return s.fail("writing pid file: %v", err)
	}
	data, err := readSmall(filepath.Join(s.dir, specFile))
	if err != nil {
		return s.fail("reading spec: %v", err)
	}
	s.spec, err = decodeSpec(data)
	if err != nil {
		return s.fail("%v", err)
	}
	task := s.spec.Task
	cg := s.spec.Cgroup

	// Orphans of the task are re-parented to us, so we can reap them.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

	scratch := filepath.Join(s.dir, scratchDir)
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return s.fail("creating scratch directory: %v", err)
	}
	files, err := openStdio(s.dir)
	if err != nil {
		_ = os.RemoveAll(scratch)
		return s.fail("%v", err)
	}
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	if err := createCgroup(cg, task.MilliCPU, task.MemoryBytes); err != nil {
		_ = os.RemoveAll(scratch)
		return s.fail("cgroup: %v", err)
	}

	workDir := task.WorkDir
	if workDir == "" {
		workDir = s.dir
	} else if !filepath.IsAbs(workDir) {
		workDir = filepath.Join(s.dir, workDir)
	}
	env := taskEnv(task.Env, scratch, task.GPUIndices)
	proc, code, startErr := startTask(cg, task.Command, env, workDir, files)
	if startErr != nil && code == 0 {
		// Not the task's fault: we could not place it in its cgroup.
		_ = removeCgroup(cg)
		_ = os.RemoveAll(scratch)
		return s.fail("%v", startErr)
	}
	s.result.StartedAt = time.Now()
	if startErr != nil {
		// The command cannot run (missing binary, not executable, bad
		// work dir): a task outcome, reported like a shell would.
		s.log.Info("supervise: task could not start", "err", startErr, "exit_code", code)
		s.result.StartErr = startErr.Error()
		s.result.ExitCode = code
		s.result.FinishedAt = s.result.StartedAt
		_ = removeCgroup(cg)
		_ = os.RemoveAll(scratch)
		return s.finish()
	}
	s.report(encodeHandshakeOK(s.result.StartedAt))

	s.supervise(proc, sigs)
	_ = os.RemoveAll(scratch)
	if err := removeCgroup(cg); err != nil {
		s.log.Error("supervise: cleanup", "err", err)
	}
	return s.finish()
}

// finish writes the status file (after everything else is cleaned up, so its
// presence means "over") and, if the runner is still waiting for the
// handshake, releases it.
func (s *supervisor) finish() int {
	if err := writeStatus(s.dir, s.result); err != nil {
		s.log.Error("supervise: writing status", "err", err)
		s.report(encodeHandshakeFail("writing status: " + err.Error()))
		return 1
	}
	s.report(encodeHandshakeOK(s.result.StartedAt))
	return 0
}

// supervise waits for the task, enforcing the walltime and relaying SIGTERM,
// then kills whatever the task left behind and records how it ended.
func (s *supervisor) supervise(proc *os.Process, sigs <-chan os.Signal) {
	task, cg := s.spec.Task, s.spec.Cgroup
	pid := proc.Pid

	// Learn of the exit without reaping: while the leader is an unreaped
	// zombie its pid (= the process group id) cannot be reused, so signals
	// to -pid always reach the task's own group.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, syscall.EINTR) {
				return
			}
		}
	}()

	var walltime <-chan time.Time
	if task.Walltime > 0 {
		t := time.NewTimer(task.Walltime - time.Since(s.result.StartedAt))
		defer t.Stop()
		walltime = t.C
	}
	signalTask := func(sig syscall.Signal) {
		_ = syscall.Kill(-pid, sig)
		signalCgroup(cg, sig) // also members that left the process group
	}
	var (
		killing  bool
		killAt   time.Time
		killTime *time.Timer
		killC    <-chan time.Time
	)
	beginKill := func(grace time.Duration) {
		at := time.Now().Add(grace)
		if killing && !at.Before(killAt) {
			return
		}
		if !killing {
			killing = true
			signalTask(syscall.SIGTERM)
		}
		killAt = at
		if killTime != nil {
			killTime.Stop()
		}
		killTime = time.NewTimer(grace)
		killC = killTime.C
	}
loop:
	for {
		select {
		case <-exited:
			break loop
		case <-walltime:
			walltime = nil
			if !killing {
				s.result.TimedOut = true
				s.log.Info("supervise: walltime reached", "walltime", task.Walltime)
			}
			beginKill(killGrace(task, -1))
		case <-sigs:
			grace := s.stopGrace(task)
			if !killing {
				s.result.Stopped = true
				s.log.Info("supervise: stop requested", "grace", grace)
			}
			beginKill(grace)
		case <-killC:
			killC = nil
			signalTask(syscall.SIGKILL)
		}
	}
	s.result.FinishedAt = time.Now()
	if killTime != nil {
		killTime.Stop()
	}

	// The leader is gone; nothing else of the task may outlive it.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	state, err := proc.Wait()
	if err != nil {
		s.log.Error("supervise: reaping task", "err", err)
		s.result.ExitCode = -1
	} else {
		s.result.ExitCode, s.result.Signal = exitCode(state.Sys().(syscall.WaitStatus))
	}
	if err := killCgroup(cg); err != nil {
		s.log.Error("supervise: killing leftover processes", "err", err)
	}
	reapOrphans()

	if n, ok := oomKills(cg); ok {
		s.result.OOMKilled = n > 0
	} else {
		s.result.OOMKilled = s.result.Signal == "SIGKILL" && memoryFailcnt(cg) > 0
	}
}

// stopGrace is the grace period a Stop asked for (the stop file), else the
// task's own.
func (s *supervisor) stopGrace(task TaskSpec) time.Duration {
	data, err := readSmall(filepath.Join(s.dir, stopFile))
	if err != nil {
		return killGrace(task, -1)
	}
	grace, err := decodeStop(data)
	if err != nil {
		s.log.Warn("supervise: ignoring stop file", "err", err)
		return killGrace(task, -1)
	}
	return grace
}

// killGrace resolves a grace period: requested if >= 0 and not zero-meaning-
// default, else the task's KillGrace, else DefaultKillGrace.
func killGrace(task TaskSpec, requested time.Duration) time.Duration {
	if requested > 0 {
		return requested
	}
	if task.KillGrace > 0 {
		return task.KillGrace
	}
	return DefaultKillGrace
}

// reapOrphans collects any exited children (orphans of the task re-parented
// to us as subreaper).
func reapOrphans() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// exitCode maps a wait status to the shell convention: the exit status, or
// 128+N and the signal's name when killed by signal N.
func exitCode(ws syscall.WaitStatus) (int, string) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), unix.SignalName(ws.Signal())
	}
	return ws.ExitStatus(), ""
}

// openStdio opens the task's stdin (/dev/null), stdout and stderr files.
func openStdio(dir string) ([]*os.File, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	files := []*os.File{devnull}
	for _, name := range []string{stdoutFile, stderrFile} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			for _, f := range files {
				_ = f.Close()
			}
			return nil, fmt.Errorf("opening %s: %w", name, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// Variables the runner sets in every task's environment.
const (
	EnvScratch    = "DURE_SCRATCH"
	EnvCUDA       = "CUDA_VISIBLE_DEVICES"
	EnvNVIDIA     = "NVIDIA_VISIBLE_DEVICES"
	defaultPATH   = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	exitNotFound  = 127 // shell: command not found / cannot start
	exitNotExecOK = 126 // shell: found but not executable
)

// taskEnv is the task's environment: its own, with our variables replacing
// any it set itself.
func taskEnv(env []string, scratch string, gpus []int) []string {
	out := make([]string, 0, len(env)+3)
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		if k != EnvScratch && k != EnvCUDA && k != EnvNVIDIA {
			out = append(out, e)
		}
	}
	ids := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = strconv.Itoa(g)
	}
	visible := strings.Join(ids, ",")
	return append(out, EnvScratch+"="+scratch, EnvCUDA+"="+visible, EnvNVIDIA+"="+visible)
}

// lookPath finds the program to run: argv[0] itself if it contains a slash
// (relative to workDir), else the first executable regular file named argv[0]
// in the task's PATH (or, if the task has none, the agent's).
func lookPath(name string, env []string, workDir string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path, found := "", false
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path, found = v, true
		}
	}
	if !found {
		if path, found = os.LookupEnv("PATH"); !found {
			path = defaultPATH
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		full := p
		if !filepath.IsAbs(full) {
			full = filepath.Join(workDir, full)
		}
		if st, err := os.Stat(full); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return full, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

// startTask starts the task in its own process group inside its cgroup. A
// non-zero code means the command itself cannot run (exit code for the
// Result); code 0 with an error means the supervisor failed.
func startTask(cg cgroupSpec, argv, env []string, workDir string, files []*os.File) (*os.Process, int, error) {
	if st, err := os.Stat(workDir); err != nil {
		return nil, exitNotFound, fmt.Errorf("work dir: %w", err)
	} else if !st.IsDir() {
		return nil, exitNotFound, fmt.Errorf("work dir: %s is not a directory", workDir)
	}
	path, err := lookPath(argv[0], env, workDir)
	if err != nil {
		return nil, exitNotFound, err
	}
	sys := &syscall.SysProcAttr{Setpgid: true}
	attr := &os.ProcAttr{Dir: workDir, Env: env, Files: files, Sys: sys}
	var proc *os.Process
	switch cg.Driver {
	case cgroupV2:
		// clone3(CLONE_INTO_CGROUP): the child is born in the task's cgroup.
		fd, err := unix.Open(cg.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("opening cgroup %s: %w", cg.Dir, err)
		}
		sys.UseCgroupFD, sys.CgroupFD = true, fd
		proc, err = os.StartProcess(path, argv, attr)
		_ = unix.Close(fd)
		return startResult(proc, err)
	case cgroupV1:
		// v1 has no clone-into-cgroup: we join the task's cgroups, fork
		// (the child inherits them from its first instruction), and step
		// back home. The few pages we touch meanwhile are charged to the
		// task; that is harmless.
		return startInV1(cg, path, argv, attr)
	}
	proc, err = os.StartProcess(path, argv, attr)
	return startResult(proc, err)
}

func startInV1(cg cgroupSpec, path string, argv []string, attr *os.ProcAttr) (*os.Process, int, error) {
	self := strconv.Itoa(os.Getpid())
	goHome := func() error {
		var errs []error
		for _, home := range []string{cg.CPUHome, cg.MemoryHome} {
			if err := writeFile(filepath.Join(home, "cgroup.procs"), self); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for _, d := range []string{cg.CPUDir, cg.MemoryDir} {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), self); err != nil {
			_ = goHome()
			return nil, 0, fmt.Errorf("joining task cgroup: %w", err)
		}
	}
	proc, err := os.StartProcess(path, argv, attr)
	if herr := goHome(); herr != nil {
		// Staying inside would charge us to the task and get us killed
		// with it; give up on this task.
		if proc != nil {
			_ = proc.Kill()
			_, _ = proc.Wait()
		}
		return nil, 0, fmt.Errorf("leaving task cgroup: %w", herr)
	}
	return startResult(proc, err)
}

// startResult classifies an os.StartProcess error the way a shell would:
// 126 for "found but cannot execute", 127 for everything else.
func startResult(proc *os.Process, err error) (*os.Process, int, error) {
	if err == nil {
		return proc, 0, nil
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EACCES, syscall.ENOEXEC, syscall.EISDIR, syscall.EPERM, syscall.ETXTBSY:
			return nil, exitNotExecOK, err
		}
	}
	return nil, exitNotFound, err
}
