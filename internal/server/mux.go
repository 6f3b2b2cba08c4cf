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
// is the address other servers dial (l's address if nil).
func Multiplex(l net.Listener, advertise net.Addr) (httpL net.Listener, raftL raft.StreamLayer) {
	if advertise == nil {
		advertise = l.Addr()
	}
	m := &mux{
		base:      l,
		advertise: advertise,
		httpCh:    make(chan net.Conn),
		raftCh:    make(chan net.Conn),
		closed:    make(chan struct{}),
	}
	go m.acceptLoop()
	return &muxSide{m: m, ch: m.httpCh, addr: l.Addr()}, &raftStream{muxSide{m: m, ch: m.raftCh, addr: advertise}}
}

type mux struct {
	base      net.Listener
	advertise net.Addr
	httpCh    chan net.Conn
	raftCh    chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
	err       error
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
// nothing within the deadline is dropped.
func (m *mux) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	ch := m.httpCh
	if first[0] == raftMagic {
		_, _ = br.Discard(1)
		ch = m.raftCh
	}
	select {
	case ch <- &bufferedConn{Conn: c, r: br}:
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

// muxSide is one side (HTTP or raft) of the multiplexed listener. Closing
// either side closes the port: both live and die with the server.
type muxSide struct {
	m    *mux
	ch   chan net.Conn
	addr net.Addr
}

func (s *muxSide) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.m.closed:
		if s.m.err != nil {
			return nil, s.m.err
		}
		return nil, net.ErrClosed
	}
}

func (s *muxSide) Close() error   { s.m.close(); return nil }
func (s *muxSide) Addr() net.Addr { return s.addr }

// raftStream is the raft side: it also dials other servers, announcing
// itself with the magic byte.
type raftStream struct{ muxSide }

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
