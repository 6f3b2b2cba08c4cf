package exec

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// handshakeFD is the descriptor on which a supervisor (per-task or node
// daemon) reports start-up to the runner that started it.
const handshakeFD = 3

// nodeFlag selects the node daemon: "dure supervise --node DIR".
const nodeFlag = "--node"

// SupervisorMain is the entry point of the hidden "dure supervise"
// subcommand. With arguments "--node DIR" it is the node supervisor daemon
// for the runner directory DIR (see daemon.go); with one argument TASKDIR it
// is the per-task supervisor: it runs one task as described by
// TASKDIR/spec.json, reports start-up on file descriptor 3, supervises the
// task until it ends and records the Result in TASKDIR/status.json. It
// returns the exit status for the process (0 when the result was recorded,
// whatever the task did).
//
// Call it before any other start-up work of the binary: in task mode its
// cost is the per-task launch cost.
func SupervisorMain(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(args) == 2 && args[0] == nodeFlag {
		return daemonMain(args[1], log)
	}
	if len(args) != 1 || args[0] == "" {
		log.Error("usage: dure supervise TASKDIR | dure supervise --node DIR (started by the dure agent, not by hand)")
		return 2
	}
	handshake, err := openHandshake()
	if err != nil {
		log.Error(err.Error())
		return 2
	}
	s := &supervisor{
		dir:       args[0],
		handshake: handshake,
		log:       log.With("task_dir", args[0]),
	}
	return s.run()
}

// openHandshake takes over descriptor 3, the start-up pipe from the runner.
func openHandshake() (*os.File, error) {
	if _, err := unix.FcntlInt(handshakeFD, unix.F_GETFD, 0); err != nil {
		return nil, fmt.Errorf("supervise: file descriptor 3 (the start-up pipe from the agent) is not open")
	}
	// Tasks must not inherit the pipe, or the runner would see it open for
	// as long as they run.
	syscall.CloseOnExec(handshakeFD)
	return os.NewFile(handshakeFD, "handshake"), nil
}

// supervisor is the per-task supervisor process.
type supervisor struct {
	dir       string
	handshake *os.File
	log       *slog.Logger
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
	spec, err := decodeSpec(data)
	if err != nil {
		return s.fail("%v", err)
	}
	// Orphans of the task are re-parented to us, so we can reap them.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

	tr := &taskRun{dir: s.dir, spec: spec.Task, cg: spec.Cgroup, log: s.log}
	devnull, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return s.fail("opening %s: %v", os.DevNull, err)
	}
	stdout, stderr, err := tr.setup()
	if err != nil {
		_ = unix.Close(devnull)
		return s.fail("%v", err)
	}
	err = tr.start([3]int{devnull, stdout, stderr}, v1Home{cpu: spec.Cgroup.CPUHome, memory: spec.Cgroup.MemoryHome})
	closeFDs(devnull, stdout, stderr)
	if err != nil {
		return s.fail("%v", err)
	}
	if tr.pid == 0 {
		s.log.Info("supervise: task could not start", "err", tr.result.StartErr, "exit_code", tr.result.ExitCode)
		return s.finish(tr.result)
	}
	s.report(encodeHandshakeOK(tr.result.StartedAt))

	stops := make(chan time.Duration)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-sigs:
				select {
				case stops <- s.stopGrace(spec.Task):
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	tr.supervise(stops)
	reapOrphans()
	tr.cleanup()
	return s.finish(tr.result)
}

// finish writes the status file (after everything else is cleaned up, so its
// presence means "over") and, if the runner is still waiting for the
// handshake, releases it.
func (s *supervisor) finish(res Result) int {
	if err := writeStatus(s.dir, res); err != nil {
		s.log.Error("supervise: writing status", "err", err)
		s.report(encodeHandshakeFail("writing status: " + err.Error()))
		return 1
	}
	s.report(encodeHandshakeOK(res.StartedAt))
	return 0
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
	return killGrace(task, grace)
}

// reapOrphans collects any exited children: in the per-task supervisor
// every child is the task or an orphan of it (we are its subreaper), and
// the task itself has been reaped by now.
func reapOrphans() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
