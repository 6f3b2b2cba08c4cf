package server

import (
	"bufio"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// raftMagic is the first byte of every raft connection between servers. HTTP
// requests start with a method name (an ASCII letter), so one port carries
// both: a leader's raft address is then also its API address, which is what
// followers forward writes to, and operators configure one address per server.
const raftMagic = 0xD7

// Multiplex splits l into an HTTP listener and a raft stream layer. advertise
// is the address other servers dial (l's address if nil). The port closes
// when both sides are closed: the HTTP server stops first at shutdown, and
// raft must not see its listener fail before it is told to stop.
func Multiplex(l net.Listener, advertise net.Addr) (httpL net.Listener, raftL raft.StreamLayer) {
	if advertise == nil {
		advertise = l.Addr()
	}
	m := &mux{base: l, open: 2, closed: make(chan struct{})}
	m.http = &muxSide{m: m, ch: make(chan net.Conn), done: make(chan struct{}), addr: l.Addr()}
	m.raft = &muxSide{m: m, ch: make(chan net.Conn), done: make(chan struct{}), addr: advertise}
	go m.acceptLoop()
	return m.http, &raftStream{m.raft}
}

type mux struct {
	base       net.Listener
	http, raft *muxSide
	mu         sync.Mutex
	open       int // sides not closed yet
	closeOnce  sync.Once
	closed     chan struct{} // the port is closed (both sides closed, or Accept failed)
	err        error         // why Accept failed, if it did
}

func (m *mux) acceptLoop() {
	for {
		c, err := m.base.Accept()
		if err != nil {
			m.err = err
			m.close()
			return
		}
		go m.route(c)
	}
}

// route reads the first byte to tell raft from HTTP. A client that sends
// nothing within the deadline is dropped, and so is one for a side that
// was closed.
func (m *mux) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	side := m.http
	if first[0] == raftMagic {
		_, _ = br.Discard(1)
		side = m.raft
	}
	select {
	case side.ch <- &bufferedConn{Conn: c, r: br}:
	case <-side.done:
		c.Close()
	case <-m.closed:
		c.Close()
	}
}

func (m *mux) close() {
	m.closeOnce.Do(func() {
		close(m.closed)
		m.base.Close()
	})
}

// muxSide is one side (HTTP or raft) of the multiplexed listener.
type muxSide struct {
	m         *mux
	ch        chan net.Conn
	addr      net.Addr
	closeOnce sync.Once
	done      chan struct{} // this side is closed
}

func (s *muxSide) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	case <-s.m.closed:
		if s.m.err != nil {
			return nil, s.m.err
		}
		return nil, net.ErrClosed
	}
}

// Close closes this side; the port closes with the second side.
func (s *muxSide) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.m.mu.Lock()
		s.m.open--
		last := s.m.open == 0
		s.m.mu.Unlock()
		if last {
			s.m.close()
		}
	})
	return nil
}

func (s *muxSide) Addr() net.Addr { return s.addr }

// raftStream is the raft side: it also dials other servers, announcing
// itself with the magic byte.
type raftStream struct{ *muxSide }

func (r *raftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{raftMagic}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// bufferedConn replays the bytes peeked while routing.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
