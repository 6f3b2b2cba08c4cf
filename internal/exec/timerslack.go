package exec

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// relaxedTimerSlackNS is the timer slack (prctl PR_SET_TIMERSLACK) that
// RelaxTimers gives a long-running dure process's own threads (the node
// daemon; dure dev, server and agent): how late the kernel may fire their
// timers to batch wake-ups. Go's sysmon thread polls the scheduler with
// sleeps of 20 µs while the process is busy, 50 or so per millisecond of
// work with the kernel's default slack of 50 µs; each wake-up of an idle
// CPU is a context switch, and together they were a fifth of the daemon's
// CPU per task and a tenth of dure dev's per job. With 1 ms sysmon wakes
// about once per millisecond. The cost is that the process's own timers
// (walltime, a stop's grace, retry sleeps, heartbeats) may fire up to 1 ms
// late.
const relaxedTimerSlackNS = 1_000_000

// taskTimerSlackNS is the timer slack tasks (and the supervisors that fork
// them) are started with: the one this process started with, once
// RelaxTimers changed its own; 0 when it did not. In a daemon started by a
// relaxed runner that is still the runner's original slack, as the runner
// starts its daemons and supervisors with it (withChildTimerSlack).
var taskTimerSlackNS uintptr

// RelaxTimers gives this process's threads relaxedTimerSlackNS of timer
// slack; the children it starts keep the slack it started with
// (withChildTimerSlack). The calling thread's own slack needs no privilege;
// the others' (sysmon among them) are set through /proc/<tid>/timerslack_ns,
// which takes CAP_SYS_NICE: without it the process runs as before. Threads
// started later inherit the slack of the thread that starts them. Call it
// once, early, before any child is started. The error says why the slack
// was left as it was.
func RelaxTimers() error {
	cur, _, errno := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_GET_TIMERSLACK, 0, 0)
	if errno != 0 {
		return errno
	}
	if cur == 0 || cur >= relaxedTimerSlackNS {
		return fmt.Errorf("the timer slack is %d ns already", cur) // a real-time thread has none
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self := unix.Gettid()
	value := []byte(strconv.Itoa(relaxedTimerSlackNS))
	relaxed := false
	var failed error
	// Twice: a thread the runtime starts during the first pass may have
	// inherited the old slack.
pass:
	for range 2 {
		entries, err := os.ReadDir("/proc/self/task")
		if err != nil {
			failed = err
			break
		}
		for _, e := range entries {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || tid == self {
				continue
			}
			err = os.WriteFile("/proc/"+e.Name()+"/timerslack_ns", value, 0)
			if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ESRCH) {
				failed = err // not allowed (no CAP_SYS_NICE)
				break pass
			}
			relaxed = relaxed || err == nil
		}
	}
	if !relaxed {
		if failed == nil {
			failed = errors.New("no other thread found")
		}
		return failed // every thread as it was
	}
	// From here on tasks are forked with the slack the daemon started with,
	// whichever thread forks them.
	taskTimerSlackNS = cur
	_, _, _ = unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_TIMERSLACK, relaxedTimerSlackNS, 0)
	return failed
}

// forkExec is syscall.ForkExec with the child given the tasks' timer
// slack: a child inherits the forking thread's.
func forkExec(path string, argv []string, attr *syscall.ProcAttr) (pid int, err error) {
	withChildTimerSlack(func() { pid, err = syscall.ForkExec(path, argv, attr) })
	return pid, err
}

// withChildTimerSlack runs start, which forks a child from the calling
// thread, with that thread's timer slack set to taskTimerSlackNS, so the
// child inherits the slack this process started with rather than the
// relaxed one.
func withChildTimerSlack(start func()) {
	if taskTimerSlackNS == 0 {
		start()
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, _, _ = unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_TIMERSLACK, taskTimerSlackNS, 0)
	start()
	_, _, _ = unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_TIMERSLACK, relaxedTimerSlackNS, 0)
}
