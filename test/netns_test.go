package test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netLab is a private layer-2 network for partition tests: a bridge in the
// root namespace holding x.x.x.1 of a /24 used by nothing else, and one
// network namespace per member, wired to the bridge by a veth pair. Cutting
// a member means taking its host-side veth down: its namespace keeps its
// address but no packet crosses. Everything is removed when the test ends.
type netLab struct {
	t      *testing.T
	prefix string // "10.251.N"
	tag    string // short unique prefix of interface and namespace names
	bridge string
	hosts  map[string]string // namespace → host-side veth
	n      int
}

var labSeq atomic.Int32

// newNetLab builds the bridge, or skips the test when network namespaces
// cannot be made here (not root, no `ip`, no netns support).
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partition tests need root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("partition tests need iproute2's `ip`: " + err.Error())
	}
	seq := labSeq.Add(1)
	l := &netLab{
		t: t, hosts: map[string]string{},
		// 10.251.0.0/16 is not routed anywhere on the test machines; the
		// third octet keeps concurrent test processes apart.
		prefix: fmt.Sprintf("10.251.%d", (os.Getpid()+int(seq))%250+1),
		tag:    fmt.Sprintf("dc%x%d", os.Getpid()&0xfff, seq%10),
	}
	l.bridge = l.tag + "br"
	probe := l.tag + "probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("partition tests need `ip netns add` (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	t.Cleanup(l.cleanup)
	l.ip("link", "add", l.bridge, "type", "bridge")
	l.ip("addr", "add", l.prefix+".1/24", "dev", l.bridge)
	l.ip("link", "set", l.bridge, "up")
	return l
}

// ip runs `ip args…` and fails the test on error.
func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// addNS makes a namespace on the bridge with address prefix.octet and
// returns its name and address.
func (l *netLab) addNS(member string, octet int) (ns, addr string) {
	l.t.Helper()
	l.n++
	ns = fmt.Sprintf("%s-%s", l.tag, member)
	host := fmt.Sprintf("%sv%d", l.tag, l.n)
	l.ip("netns", "add", ns)
	l.hosts[ns] = host
	l.ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.ip("link", "set", host, "master", l.bridge, "up")
	addr = fmt.Sprintf("%s.%d", l.prefix, octet)
	l.ip("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
	l.ip("-n", ns, "link", "set", "eth0", "up")
	l.ip("-n", ns, "link", "set", "lo", "up")
	return ns, addr
}

// cut partitions a namespace from everything; heal undoes it.
func (l *netLab) cut(ns string)  { l.t.Helper(); l.ip("link", "set", l.hosts[ns], "down") }
func (l *netLab) heal(ns string) { l.t.Helper(); l.ip("link", "set", l.hosts[ns], "up") }

// gateway is the root namespace's address on the bridge.
func (l *netLab) gateway() string { return l.prefix + ".1" }

func (l *netLab) cleanup() {
	for ns, host := range l.hosts {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	_ = exec.Command("ip", "link", "del", l.bridge).Run()
}

// dureIn runs the dure CLI inside a namespace (as an operator logged in on
// that machine would).
func (l *netLab) dureIn(ns, addr string, args ...string) result {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, dureBin}, args...)...)
	cmd.Env = append(os.Environ(), "DURE_ADDR=http://"+addr, "USER=e2e")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatalf("dure %v in %s: %v", args, ns, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// httpIn is an HTTP client whose connections are made inside namespace ns:
// each dial runs on a thread switched into the namespace (a socket belongs
// to the namespace of the thread that creates it). The thread is never
// switched back; it exits with its goroutine.
func httpIn(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread() // no Unlock: the thread dies with this goroutine
			f, err := os.Open("/run/netns/" + ns)
			if err != nil {
				ch <- res{nil, err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- res{nil, fmt.Errorf("setns %s: %w", ns, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}
