package exec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A pidWatch waits for a process to exit through a pidfd registered with Go's
// network poller, so thousands of supervised tasks cost no OS thread each
// (os.Process.Wait blocks one thread per process). It works for processes
// that are not our children too: supervisors left by a previous agent.
type pidWatch struct {
	f *os.File // the pidfd
}

// openPidWatch opens a pidfd for pid. For a child we have not reaped, the pid
// cannot have been reused, so the pidfd refers to our child.
func openPidWatch(pid int) (*pidWatch, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	unix.CloseOnExec(fd)
	return &pidWatch{f: os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))}, nil
}

// newPidWatch wraps a pidfd obtained at fork (clone's CLONE_PIDFD).
func newPidWatch(fd, pid int) (*pidWatch, error) {
	if fd < 0 {
		return nil, fmt.Errorf("no pidfd for process %d", pid)
	}
	// Non-blocking, so that os.NewFile registers it with the poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	return &pidWatch{f: os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))}, nil
}

// waitTimeout is wait bounded by d; it reports whether the process exited.
func (w *pidWatch) waitTimeout(d time.Duration) bool {
	_ = w.f.SetReadDeadline(time.Now().Add(d))
	return w.wait() == nil
}

// exited reports, without blocking, whether the process has exited.
func (w *pidWatch) exited() bool {
	var n int
	rc, err := w.f.SyscallConn()
	if err != nil {
		return false
	}
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ = unix.Poll(fds, 0)
	})
	return n > 0
}

// reapIfChild collects the process's exit status if it is our child and has
// exited; for anyone else's process it does nothing.
func (w *pidWatch) reapIfChild() {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		var info unix.Siginfo
		_ = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
	})
}

// wait blocks until the process has exited; it returns an error if the watch
// was closed first.
func (w *pidWatch) wait() error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		// A pidfd polls readable once its process has exited.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			perr = err
			return true
		}
		return n > 0
	})
	if err != nil {
		return err
	}
	return perr
}

// reap collects the exit status of our child (the process must have exited,
// or this blocks).
func (w *pidWatch) reap() error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		var info unix.Siginfo
		for {
			werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED, nil)
			if !errors.Is(werr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	return werr
}

// signal sends sig to the process; a process that has already exited is not
// an error.
func (w *pidWatch) signal(sig syscall.Signal) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	}); err != nil {
		return err
	}
	if errors.Is(serr, syscall.ESRCH) {
		return nil
	}
	return serr
}

func (w *pidWatch) close() error { return w.f.Close() }

// isSupervisorOf reports whether pid is a supervisor of taskDir, judged by
// its command line (the task directory is its last argument). Used with a
// pidfd opened first, it guards against a recycled pid.
func isSupervisorOf(pid int, taskDir string) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(bytes.TrimRight(data, "\x00")), "\x00")
	return len(args) >= 2 && args[len(args)-1] == taskDir
}

// eventQueue is an unbounded FIFO in front of the Events channel, so a slow
// reader never holds up supervision. The channel is buffered and, while the
// queue is empty and the pump idle, push hands an event straight to it:
// no goroutine hop per event in the common case.
type eventQueue struct {
	mu     sync.Mutex
	items  []TaskEvent
	idle   bool // the pump waits for work (and holds no event)
	closed bool
	wake   chan struct{}
	done   chan struct{}
	out    chan TaskEvent
	exited chan struct{}
}

func newEventQueue() *eventQueue {
	q := &eventQueue{
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		out:    make(chan TaskEvent, 64),
		exited: make(chan struct{}),
	}
	go q.pump()
	return q
}

func (q *eventQueue) push(ev TaskEvent) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.idle && len(q.items) == 0 {
		select {
		case q.out <- ev: // nothing queued before it: order is kept
			q.mu.Unlock()
			return
		default:
		}
	}
	q.items = append(q.items, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) pump() {
	defer close(q.exited)
	defer close(q.out)
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.idle = true
			q.mu.Unlock()
			select {
			case <-q.wake:
				q.mu.Lock()
				q.idle = false
				q.mu.Unlock()
				continue
			case <-q.done:
				return
			}
		}
		ev := q.items[0]
		q.items[0] = TaskEvent{}
		q.items = q.items[1:]
		q.mu.Unlock()
		select {
		case q.out <- ev:
		case <-q.done:
			return
		}
	}
}

// close stops delivery (undelivered events are dropped: the status files
// hold them) and closes the output channel.
func (q *eventQueue) close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.exited
		return
	}
	q.closed = true
	q.items = nil
	q.mu.Unlock()
	close(q.done)
	<-q.exited
}
