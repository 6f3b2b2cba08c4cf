package agent

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/exec"
)

// Tuning knobs that are not worth a config field.
const (
	watchWait           = 30 * time.Second // blocking-query wait for the allocation watch
	maxConcurrentStarts = 16
	updateFlushTimeout  = 2 * time.Second
)

// Agent is the node agent. Make one with New, then call Run once.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	detected  Detected
	sessionID string
	advertise string
	seed      uint64

	ln      net.Listener
	runner  *exec.Runner
	servers *servers
	updates *updateQueue

	mu    sync.Mutex
	tasks map[string]*task // by allocation ID, until the GC removes them
	live  map[string]*task // the subset not ended yet
	// onDisk are ended tasks found in the task directory at start, by ID,
	// with when they ended; the GC removes them after the retention.
	onDisk map[string]time.Time
	gcNow  chan struct{} // asks gcLoop for a pass now (MaxEndedTasks reached)

	starts   sync.WaitGroup // Start and Stop calls in flight
	startSem chan struct{}

	registered chan struct{} // closed after the first successful registration
	ran        atomic.Bool
	closeOnce  sync.Once
}

// New validates cfg, detects the node's resources, opens the log listener
// (so Addr is known at once) and creates the exec runner. Call Run to start
// working, or Close to give the listener and runner back without running.
func New(cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.DataDir, cfg.Exec.Dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("agent: data dir: %w", err)
		}
	}
	log := cfg.Logger.With("component", "agent", "node", cfg.Name)
	det, err := DetectResources(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("agent: detect resources: %w", err)
	}
	var sb [24]byte
	if _, err := crand.Read(sb[:]); err != nil {
		return nil, fmt.Errorf("agent: session id: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("agent: listen %s: %w", cfg.Listen, err)
	}
	runner, err := exec.NewRunner(cfg.Exec)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	// Tasks left by an earlier agent process: running ones are watched
	// again (their end arrives as an event), ended ones wait for the GC.
	recovered, err := runner.Recover()
	if err != nil {
		ln.Close()
		runner.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{
		cfg:        cfg,
		log:        log,
		detected:   det,
		sessionID:  hex.EncodeToString(sb[:16]),
		seed:       binary.LittleEndian.Uint64(sb[16:]),
		ln:         ln,
		runner:     runner,
		servers:    newServers(cfg.Servers, log),
		updates:    newUpdateQueue(),
		tasks:      map[string]*task{},
		live:       map[string]*task{},
		onDisk:     map[string]time.Time{},
		gcNow:      make(chan struct{}, 1),
		startSem:   make(chan struct{}, maxConcurrentStarts),
		registered: make(chan struct{}),
	}
	a.adoptRecovered(recovered)
	if runner.CgroupDriver() == "off" {
		log.Warn("cgroups are off: task CPU and memory limits are not enforced and OOM kills are not detected")
	}
	a.advertise = cfg.Advertise
	if a.advertise == "" {
		a.advertise = advertiseAddr(ln.Addr())
	}
	log.Info("agent ready", "listen", ln.Addr().String(), "advertise", a.advertise,
		"millicpu", det.Capacity.MilliCPU, "memory", formatBytes(det.Capacity.MemoryBytes),
		"gpus", len(det.GPUs), "scratch", formatBytes(det.Capacity.ScratchBytes), "task_dir", cfg.Exec.Dir)
	return a, nil
}

// Addr is the actual address of the log listener ("127.0.0.1:41234").
func (a *Agent) Addr() string { return a.ln.Addr().String() }

// Advertise is the address registered with the servers.
func (a *Agent) Advertise() string { return a.advertise }

// Name is the node's name.
func (a *Agent) Name() string { return a.cfg.Name }

// Resources is what the agent registers as the node's capacity and GPUs.
func (a *Agent) Resources() Detected { return a.detected }

// Run registers with the servers and works until ctx is done. It returns
// nil then, or an error if the log listener fails. Running tasks are not
// touched on return: they belong to their supervisors and a later agent
// process adopts them. The listener and runner are closed on return.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	srv := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(a.ln) }()

	senderCtx, stopSending := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSending()
	snd := &sender{
		q: a.updates,
		send: func(ctx context.Context, u []api.AllocUpdate) error {
			return a.servers.do(ctx, "updates", 10*time.Second, func(ctx context.Context, c *api.Client) error {
				return c.UpdateAllocations(ctx, u)
			})
		},
		ready: a.registered,
		busy: func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			return len(a.live) >= busyTasks
		},
		spacing:      sendSpacing,
		log:          a.log,
		bo:           newBackoff(50*time.Millisecond, 5*time.Second, a.seed+1),
		flushTimeout: updateFlushTimeout,
	}
	sent := make(chan struct{})
	go func() { snd.run(senderCtx); close(sent) }()

	var loops sync.WaitGroup
	loops.Go(func() { a.heartbeatLoop(ctx) })
	loops.Go(func() { a.watchLoop(ctx) })
	loops.Go(func() { a.eventLoop(ctx) })
	loops.Go(func() { a.gcLoop(ctx) })

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("agent: log endpoint: %w", err)
		cancel()
	}
	srv.Close()
	loops.Wait()
	a.starts.Wait()
	// Reports queued so far get updateFlushTimeout more to reach a server.
	stopSending()
	<-sent
	a.log.Info("agent stopped; tasks keep running under their supervisors")
	return err
}

// Close releases the listener and the exec runner. Run calls it on return;
// call it yourself only if Run is never called. Tasks are not touched.
func (a *Agent) Close() error {
	var err error
	a.closeOnce.Do(func() {
		a.ln.Close()
		err = a.runner.Close()
	})
	return err
}

func (a *Agent) eventLoop(ctx context.Context) {
	events := a.runner.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			a.taskEnded(ev.ID, ev.Result)
		}
	}
}

// watchLoop follows the node's allocations with blocking queries and
// reconciles each answer. It asks for changes only: the first answer (and
// any after the servers' state went backwards) is the node's whole live
// list, later ones the allocations changed since the previous answer, so a
// busy node's watch costs its changes rather than its whole list each time.
func (a *Agent) watchLoop(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-a.registered:
	}
	bo := newBackoff(100*time.Millisecond, 5*time.Second, a.seed+2)
	var index uint64
	for ctx.Err() == nil {
		var allocs []api.Allocation
		var idx uint64
		var all bool
		err := a.servers.follow(ctx, "allocations", watchWait+10*time.Second, func(ctx context.Context, c *api.Client) error {
			var err error
			allocs, idx, all, err = c.NodeAllocationChanges(ctx, a.cfg.Name, api.WatchOptions{Index: index, Wait: watchWait})
			return err
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := bo.next()
			a.log.Warn("watching allocations failed; will retry", "retry_in", d, "err", err)
			sleep(ctx, d)
			continue
		}
		bo.reset()
		switch {
		case all:
			// An index going backwards means a different or rebuilt state;
			// that answer may be older than what we acted on, so it cannot
			// prove a task orphaned.
			a.reconcile(allocs, nil, idx >= index)
		case idx < index:
			// Changes against a different or rebuilt state: start over
			// from the whole list.
			index = 0
			continue
		default:
			var live []api.Allocation
			var ended []string
			for _, al := range allocs {
				if al.Status == statusExited || al.Status == statusFailed || al.Status == statusLost {
					ended = append(ended, al.ID)
					continue
				}
				live = append(live, al)
			}
			a.reconcile(live, ended, false)
		}
		if idx == 0 {
			// No index: the query cannot block; do not spin.
			a.log.Warn("server answered the allocation watch without an index; polling", "header", api.IndexHeader)
			sleep(ctx, time.Second)
		}
		index = idx
	}
}

// advertiseAddr turns the listener's address into one other machines can
// reach: a wildcard host becomes this machine's first non-loopback IPv4
// address, or its hostname.
func advertiseAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return addr.String()
	}
	if ifaces, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range ifaces {
			if n, ok := ia.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return net.JoinHostPort(n.IP.String(), port)
			}
		}
	}
	if h, err := os.Hostname(); err == nil {
		return net.JoinHostPort(h, port)
	}
	return addr.String()
}
