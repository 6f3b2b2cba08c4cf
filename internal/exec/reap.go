package exec

import (
	"os"
	"os/signal"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reapStrays reaps exited children that are not task leaders: orphans of
// tasks re-parented to us. It peeks at exited children (WNOWAIT) and reaps
// only those it does not supervise — never a blanket wait, which would steal
// a task's exit status from its supervising goroutine.
func (d *daemon) reapStrays() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	for range sig {
		for d.reapStraysOnce() {
			time.Sleep(50 * time.Millisecond) // a task leader is about to be reaped
		}
		time.Sleep(20 * time.Millisecond) // coalesce bursts of SIGCHLD
	}
}

// reapStraysOnce reaps the stray zombies it can see; it reports true when a
// task leader's zombie hides the rest (waitid finds one at a time).
func (d *daemon) reapStraysOnce() bool {
	d.forkMu.Lock()
	defer d.forkMu.Unlock()
	for {
		pid := peekExitedChild()
		if pid <= 0 {
			return false
		}
		d.mu.Lock()
		task := d.children[pid]
		d.mu.Unlock()
		if task {
			return true
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
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
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, unix.P_ALL, 0, uintptr(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0
		}
		return int(info.Pid)
	}
}
