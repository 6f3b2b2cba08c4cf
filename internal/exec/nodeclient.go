package exec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// connectTimeout bounds how long a runner tries to reach (or start) the
// node daemon, and how long a request waits for a connection.
const connectTimeout = 30 * time.Second

// errConnLost: the connection broke after a request was sent; whether the
// daemon acted on it is unknown.
var errConnLost = errors.New("exec: connection to the supervisor daemon lost")

// nodeClient is a Runner's connection to the node daemon of its Dir. One
// goroutine reads everything the daemon sends; when the connection breaks
// (the daemon died) it reconnects, starting a new daemon if none runs, and
// reconciles the runner's tasks with what the new daemon knows.
type nodeClient struct {
	dir     string
	command []string // the supervisor command, nodeFlag, dir
	devnull *os.File
	supLog  *os.File
	log     *slog.Logger
	onEvent func(id string, res Result)
	resync  func(rep *reply) // reconcile after a reconnect (list reply)

	wmu sync.Mutex // one writer at a time

	mu       sync.Mutex
	conn     *net.UnixConn // nil while (re)connecting
	ready    chan struct{} // closed once conn is set
	daemon   *pidWatch     // the daemon process behind conn
	pending  map[uint64]*pendingCall
	seq      uint64
	closing  bool // no reconnecting: set once close or shutdown was answered
	finished sync.Once
	done     chan struct{} // closed by finish
	loopDone chan struct{}
}

type pendingCall struct {
	ch      chan reply   // buffered: the reader never blocks on it
	onReply func(*reply) // runs in the reader, before the next frame is read
}

// dialNode connects to Dir's daemon, starting one if none runs.
func dialNode(c *nodeClient) error {
	c.pending = map[uint64]*pendingCall{}
	c.ready = make(chan struct{})
	c.done = make(chan struct{})
	c.loopDone = make(chan struct{})
	conn, br, w, err := c.dial()
	if err != nil {
		return err
	}
	c.conn, c.daemon = conn, w
	close(c.ready)
	go c.loop(conn, br)
	return nil
}

// dial reaches the daemon: connect; if nobody listens, start a daemon and
// connect again. Two runners racing here start at most one daemon: the
// second daemon finds the lock taken and says so.
func (c *nodeClient) dial() (*net.UnixConn, *bufio.Reader, *pidWatch, error) {
	deadline := time.Now().Add(connectTimeout)
	wait := time.Millisecond
	sock := filepath.Join(c.dir, socketFile)
	var last error
	for {
		conn, err := dialUnix(sock)
		if err == nil {
			br, w, herr := c.hello(conn)
			if herr == nil {
				return conn, br, w, nil
			}
			_ = conn.Close()
			var fatal *helloError
			if errors.As(herr, &fatal) {
				return nil, nil, nil, herr
			}
			last = herr // a daemon on its way out: try again
		} else {
			locked, serr := c.startDaemon()
			if serr != nil {
				return nil, nil, nil, serr
			}
			if !locked {
				continue // it listens now
			}
			last = errors.New("another supervisor daemon holds the lock but does not answer yet")
		}
		if time.Now().After(deadline) {
			return nil, nil, nil, fmt.Errorf("exec: reaching the supervisor daemon of %s: %w", c.dir, last)
		}
		select {
		case <-c.done:
			return nil, nil, nil, ErrClosed
		case <-time.After(wait):
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
}

func dialUnix(path string) (*net.UnixConn, error) {
	var conn *net.UnixConn
	err := withSocketPath(path, func(p string) error {
		var err error
		conn, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	return conn, err
}

// helloError is a daemon that answers but cannot serve us.
type helloError struct{ msg string }

func (e *helloError) Error() string { return "exec: supervisor daemon: " + e.msg }

// hello checks the protocol version and opens a pidfd for the daemon (from
// the socket's peer credentials), so Close can wait for it to exit.
func (c *nodeClient) hello(conn *net.UnixConn) (*bufio.Reader, *pidWatch, error) {
	frame, _ := appendFrame(nil, request{Seq: 1, Op: opHello, Version: protoVersion})
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(frame); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	for {
		data, err := readFrame(br)
		if err != nil {
			return nil, nil, err
		}
		rep, err := decodeReply(data)
		if err != nil {
			return nil, nil, &helloError{msg: err.Error()}
		}
		if rep.Seq == 0 {
			continue // an event before our hello: the resync after it covers it
		}
		if rep.Err != "" {
			return nil, nil, &helloError{msg: rep.Err}
		}
		break
	}
	var w *pidWatch
	if rc, err := conn.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				w, _ = openPidWatch(int(cred.Pid))
			}
		})
	}
	return br, w, nil
}

// startDaemon starts a daemon for Dir in its own session (it outlives the
// agent) and waits for its start-up line. locked means another daemon
// holds Dir already.
func (c *nodeClient) startDaemon() (locked bool, err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return false, fmt.Errorf("exec: %w", err)
	}
	var proc *os.Process
	withChildTimerSlack(func() {
		proc, err = os.StartProcess(c.command[0], c.command, &os.ProcAttr{
			Dir:   "/", // hold no directory of the agent's
			Files: []*os.File{c.devnull, c.supLog, c.supLog, pw},
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
	})
	pw.Close()
	if err != nil {
		pr.Close()
		return false, fmt.Errorf("exec: starting the supervisor daemon %s: %w", c.command[0], err)
	}
	_ = pr.SetReadDeadline(time.Now().Add(connectTimeout))
	line, rerr := io.ReadAll(io.LimitReader(pr, 4096))
	pr.Close()
	if strings.TrimSpace(string(line)) == handshakeLocked {
		_, _ = proc.Wait()
		return true, nil
	}
	_, failure, herr := decodeHandshake(line)
	if rerr == nil && herr == nil && failure == "" {
		// Running. It is our child until we exit; Close reaps it if it
		// exits while we watch.
		c.log.Debug("started the supervisor daemon", "pid", proc.Pid, "dir", c.dir)
		_ = proc.Release()
		return false, nil
	}
	if rerr != nil {
		_ = proc.Kill()
	}
	state, _ := proc.Wait()
	switch {
	case failure != "":
		return false, fmt.Errorf("exec: supervisor daemon: %s", failure)
	case rerr != nil:
		return false, fmt.Errorf("exec: supervisor daemon did not report start-up: %w", rerr)
	}
	return false, fmt.Errorf("exec: supervisor daemon failed (%v): %s", state, logTail(filepath.Join(c.dir, supervisorLog), c.dir))
}

// loop reads the daemon's frames until the connection breaks, then
// reconnects; it ends when the client is closed.
func (c *nodeClient) loop(conn *net.UnixConn, br *bufio.Reader) {
	defer close(c.loopDone)
	for {
		err := c.readAll(br)
		c.mu.Lock()
		closing := c.closing
		pend := c.pending
		c.conn, c.pending = nil, map[uint64]*pendingCall{}
		c.ready = make(chan struct{})
		var w *pidWatch
		if !closing { // else finish deals with the daemon
			w, c.daemon = c.daemon, nil
		}
		c.mu.Unlock()
		for _, pc := range pend {
			pc.ch <- reply{Code: codeLost, Err: err.Error()}
		}
		_ = conn.Close()
		if closing {
			return
		}
		if w != nil {
			// The daemon died (or is exiting): reap it if it is our child.
			if w.waitTimeout(2 * time.Second) {
				w.reapIfChild()
			}
			_ = w.close()
		}
		c.log.Warn("lost the connection to the supervisor daemon; reconnecting", "err", err)
		for {
			conn, br, w, err = c.dial()
			if err == nil {
				break
			}
			if errors.Is(err, ErrClosed) {
				return
			}
			c.log.Error("cannot reach the supervisor daemon; retrying", "err", err)
			select {
			case <-c.done:
				return
			case <-time.After(time.Second):
			}
		}
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			_ = conn.Close()
			if w != nil {
				_ = w.close()
			}
			return
		}
		c.conn, c.daemon = conn, w
		close(c.ready)
		c.mu.Unlock()
		// Tasks that ended while we were away: the new daemon recorded
		// them; the list reply tells which are still running.
		_ = c.post(&request{Op: opList}, &pendingCall{ch: make(chan reply, 1), onReply: c.resync})
	}
}

func (c *nodeClient) readAll(br *bufio.Reader) error {
	for {
		data, err := readFrame(br)
		if err != nil {
			return err
		}
		rep, err := decodeReply(data)
		if err != nil {
			return err // a daemon speaking nonsense: drop it and reconnect
		}
		if rep.Seq == 0 {
			c.onEvent(rep.Event.ID, Result(rep.Event.Result))
			continue
		}
		c.mu.Lock()
		pc := c.pending[rep.Seq]
		delete(c.pending, rep.Seq)
		c.mu.Unlock()
		if pc == nil {
			continue
		}
		if pc.onReply != nil {
			pc.onReply(&rep)
		}
		pc.ch <- rep
	}
}

// post sends req once a connection is up; pc gets the reply.
func (c *nodeClient) post(req *request, pc *pendingCall) error {
	var timer *time.Timer
	for {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return ErrClosed
		}
		if c.conn != nil {
			break
		}
		ready := c.ready
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(connectTimeout)
			defer timer.Stop()
		}
		select {
		case <-ready:
		case <-c.done:
			return ErrClosed
		case <-timer.C:
			return fmt.Errorf("exec: no connection to the supervisor daemon for %s", connectTimeout)
		}
	}
	c.seq++
	req.Seq = c.seq
	c.pending[req.Seq] = pc
	conn := c.conn
	c.mu.Unlock()
	frame, err := appendFrame(nil, req)
	if err == nil {
		c.wmu.Lock()
		_, err = conn.Write(frame)
		c.wmu.Unlock()
		if err != nil {
			err = errConnLost
		}
	}
	if err != nil {
		c.mu.Lock()
		delete(c.pending, req.Seq)
		c.mu.Unlock()
	}
	return err
}

// call sends req and waits for its reply. errConnLost means the daemon may
// or may not have acted on it.
func (c *nodeClient) call(req request, onReply func(*reply)) (reply, error) {
	pc := &pendingCall{ch: make(chan reply, 1), onReply: onReply}
	if err := c.post(&req, pc); err != nil {
		return reply{}, err
	}
	select {
	case rep := <-pc.ch:
		if rep.Code == codeLost {
			return rep, errConnLost
		}
		return rep, nil
	case <-c.done:
		return reply{}, ErrClosed
	}
}

// markClosing stops the reader from reconnecting when the connection ends:
// it runs (in the reader) on the reply to close or shutdown, before the
// daemon can hang up.
func (c *nodeClient) markClosing(*reply) {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
}

// close disconnects. If the daemon says it will exit (we were its last
// client and it has no tasks) close waits for that and reaps it when it is
// our child, so tests and `dure dev` leave no process behind.
func (c *nodeClient) close() {
	c.mu.Lock()
	connected := c.conn != nil // else reconnecting: do not wait for a new daemon
	c.mu.Unlock()
	exiting := false
	if connected {
		pc := &pendingCall{ch: make(chan reply, 1), onReply: c.markClosing}
		if err := c.post(&request{Op: opClose}, pc); err == nil {
			select {
			case rep := <-pc.ch:
				exiting = rep.Exiting
			case <-time.After(5 * time.Second):
			}
		}
	}
	c.finish(exiting)
}

// finish ends the reader and, when the daemon is exiting, waits for it.
func (c *nodeClient) finish(waitExit bool) {
	c.finished.Do(func() {
		c.mu.Lock()
		c.closing = true
		conn, w := c.conn, c.daemon
		c.daemon = nil
		c.mu.Unlock()
		close(c.done)
		if w != nil {
			if waitExit && !w.waitTimeout(10*time.Second) {
				c.log.Warn("the supervisor daemon said it would exit but has not")
			}
			w.reapIfChild()
			_ = w.close()
		}
		if conn != nil {
			_ = conn.Close()
		}
	})
	<-c.loopDone
}
