package exec

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// childReaper is the node daemon's one waiter for all of its children: on
// every SIGCHLD it peeks at each exited child (waitid WNOWAIT), kills a
// task leader's process group while the leader's pid still pins it, reaps
// the leader and hands its wait status to the task's supervising
// goroutine; children it does not know (orphans of tasks, re-parented to us
// as subreaper) it just reaps. It replaces a pidfd, a poller registration
// and a goroutine per task. Tasks adopted from an earlier daemon are not
// our children: they are still watched by pidfd (taskRun.watch).
type childReaper struct {
	// forkMu is held shared from a fork to registering its pid, and
	// exclusively while reaping, so an exited child is never taken for a
	// stray before its task registers it.
	forkMu sync.RWMutex
	mu     sync.Mutex
	leader map[int]*childExit // task leaders forked and not yet reaped
}

// childExit is one task leader's end as the reaper saw it.
type childExit struct {
	pid  int
	done chan struct{} // closed once reaped; then ws and err are set
	ws   syscall.WaitStatus
	err  error
	// sigMu orders signals to the leader's process group before the reap:
	// once reaped, its pid (and so the group id) may be reused.
	sigMu  sync.Mutex
	reaped bool
}

// newChildReaper starts the reaper; SIGCHLD is subscribed before it returns,
// so no child forked after it can exit unseen.
func newChildReaper() *childReaper {
	rp := &childReaper{leader: map[int]*childExit{}}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	go func() {
		for range sig { // one buffered signal covers any burst: reapAll loops
			rp.reapAll()
		}
	}()
	return rp
}

// register records a freshly forked task leader; the caller holds forkMu
// shared since before the fork.
func (rp *childReaper) register(pid int) *childExit {
	ce := &childExit{pid: pid, done: make(chan struct{})}
	rp.mu.Lock()
	rp.leader[pid] = ce
	rp.mu.Unlock()
	return ce
}

// reapAll reaps every child that has exited.
func (rp *childReaper) reapAll() {
	rp.forkMu.Lock()
	defer rp.forkMu.Unlock()
	for {
		pid := peekExitedChild()
		if pid <= 0 {
			return
		}
		rp.mu.Lock()
		ce := rp.leader[pid]
		delete(rp.leader, pid)
		rp.mu.Unlock()
		if ce == nil {
			var ws syscall.WaitStatus
			if _, err := wait4(pid, &ws); err != nil {
				return // not ours to reap after all (cannot happen); do not spin
			}
			continue
		}
		ce.sigMu.Lock()
		// Nothing of the task may outlive its leader; the group id is
		// still pinned by the unreaped leader.
		_, _, _ = syscall.RawSyscall(syscall.SYS_KILL, uintptr(-pid), uintptr(syscall.SIGKILL), 0)
		_, ce.err = wait4(pid, &ce.ws)
		ce.reaped = true
		ce.sigMu.Unlock()
		close(ce.done)
	}
}

// signalGroup sends sig to the leader's process group unless the leader
// has been reaped.
func (ce *childExit) signalGroup(sig syscall.Signal) {
	ce.sigMu.Lock()
	if !ce.reaped {
		killGroup(ce.pid, sig)
	}
	ce.sigMu.Unlock()
}

// wait4 reaps pid, a zombie: the call cannot block, so it is a raw one,
// which the Go scheduler does not see (see sysfile.go: a call it sees
// that happens to last 20 µs costs more than the call).
func wait4(pid int, ws *syscall.WaitStatus) (int, error) {
	for {
		got, _, errno := syscall.RawSyscall6(syscall.SYS_WAIT4, uintptr(pid), uintptr(unsafe.Pointer(ws)), 0, 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return int(got), errno
		}
		return int(got), nil
	}
}

// siginfoChild is siginfo_t as waitid(2) fills it for a child (x86-64 and
// arm64 layout alike); x/sys's Siginfo hides these fields.
type siginfoChild struct {
	Signo, Errno, Code int32
	_                  int32
	Pid                int32
	UID                uint32
	Status             int32
	_                  [100]byte
}

// peekExitedChild returns the pid of an exited child without reaping it, or 0.
func peekExitedChild() int {
	var info siginfoChild
	for {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_WAITID, unix.P_ALL, 0, uintptr(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0
		}
		return int(info.Pid)
	}
}
