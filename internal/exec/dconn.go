package exec

import (
	"net"
	"sync"
)

// dconn is one client connection. Frames are queued in the order they are
// sent (under d.mu where order matters: a start reply before the task's end
// event, a list reply before the end events of the tasks it lists) and
// written by whichever goroutine finds the connection idle, outside d.mu:
// no extra goroutine hop per frame, and a client that stops reading blocks
// only the goroutine writing to it, never the daemon.
type dconn struct {
	c       *net.UnixConn
	mu      sync.Mutex
	queue   [][]byte
	writing bool // a goroutine is draining the queue
	done    bool // finish was called: close once the queue is drained
	closed  bool
	flushed chan struct{} // closed when the connection is closed
}

func newDconn(c *net.UnixConn) *dconn {
	return &dconn{c: c, flushed: make(chan struct{})}
}

func replyFrame(rep reply) []byte {
	frame, err := appendFrame(nil, rep)
	if err != nil {
		frame, _ = appendFrame(nil, reply{Seq: rep.Seq, Err: err.Error()})
	}
	return frame
}

// enqueue queues a frame; true means the caller must call drain (after
// releasing d.mu).
func (dc *dconn) enqueue(frame []byte) bool {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.closed {
		return false
	}
	dc.queue = append(dc.queue, frame)
	if dc.writing {
		return false
	}
	dc.writing = true
	return true
}

// reply sends a reply; not for use under d.mu.
func (dc *dconn) reply(rep reply) {
	if dc.enqueue(replyFrame(rep)) {
		dc.drain()
	}
}

// drain writes what is queued, batching frames into one write, until the
// queue is empty.
func (dc *dconn) drain() {
	var buf []byte
	for {
		dc.mu.Lock()
		q := dc.queue
		dc.queue = nil
		if len(q) == 0 {
			dc.writing = false
			closeNow := dc.done && !dc.closed
			dc.closed = dc.closed || closeNow
			dc.mu.Unlock()
			if closeNow {
				dc.close()
			}
			return
		}
		dc.mu.Unlock()
		out := q[0]
		if len(q) > 1 {
			buf = buf[:0]
			for _, f := range q {
				buf = append(buf, f...)
			}
			out = buf
		}
		if _, err := dc.c.Write(out); err != nil {
			dc.mu.Lock()
			closeNow := !dc.closed
			dc.closed, dc.queue, dc.writing = true, nil, false
			dc.mu.Unlock()
			if closeNow {
				dc.close()
			}
			return
		}
	}
}

// finish closes the connection once what is queued has been written.
func (dc *dconn) finish() {
	dc.mu.Lock()
	dc.done = true
	closeNow := !dc.writing && !dc.closed
	dc.closed = dc.closed || closeNow
	dc.mu.Unlock()
	if closeNow {
		dc.close()
	}
}

func (dc *dconn) close() {
	_ = dc.c.Close()
	close(dc.flushed)
}
