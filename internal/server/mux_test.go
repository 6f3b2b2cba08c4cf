package server_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/durehq/dure/internal/server"
)

// acceptOne accepts one connection on l and reads n bytes from it.
func acceptOne(t *testing.T, l interface {
	Accept() (net.Conn, error)
}, n int) string {
	t.Helper()
	type got struct {
		s   string
		err error
	}
	ch := make(chan got, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- got{err: err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, n)
		_, err = io.ReadFull(c, b)
		ch <- got{string(b), err}
	}()
	select {
	case g := <-ch:
		if g.err != nil {
			t.Fatalf("accept and read: %v", g.err)
		}
		return g.s
	case <-time.After(5 * time.Second):
		t.Fatal("nothing accepted within 5s")
		return ""
	}
}

// sendRaft dials the raft side of addr as a peer's transport does, writes
// msg, and returns what raftL's accepted connection read.
func sendRaft(t *testing.T, raftL raft.StreamLayer, addr, msg string) string {
	t.Helper()
	c, err := raftL.Dial(raft.ServerAddress(addr), time.Second)
	if err != nil {
		t.Fatalf("raft dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	return acceptOne(t, raftL, len(msg))
}

// One port carries HTTP and raft: each side gets its own connections with
// their bytes intact (raft's magic byte removed). Closing the HTTP side at
// shutdown leaves raft's side working, so raft never sees its listener fail
// before it is stopped; the port closes with the second side.
func TestMultiplexRoutesBySideAndClosesWithBoth(t *testing.T) {
	base, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpL, raftL := server.Multiplex(base, nil)
	addr := base.Addr().String()
	t.Cleanup(func() { httpL.Close(); raftL.Close() })

	hc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := hc.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := acceptOne(t, httpL, 16); got != "GET / HTTP/1.1\r\n" {
		t.Errorf("HTTP side read %q", got)
	}

	if got := sendRaft(t, raftL, addr, "append"); got != "append" {
		t.Errorf("raft side read %q; want the bytes after the magic byte", got)
	}

	httpL.Close()
	if _, err := httpL.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on the closed HTTP side: %v; want net.ErrClosed", err)
	}
	if got := sendRaft(t, raftL, addr, "vote"); got != "vote" {
		t.Errorf("raft side read %q after the HTTP side closed; want the port still open", got)
	}

	raftL.Close()
	if _, err := raftL.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on the closed raft side: %v; want net.ErrClosed", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after both sides closed")
	}
}
