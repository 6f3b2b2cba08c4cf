package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/spec"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/httpapi"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/server"
)

type serverFlags struct {
	config, name, data, httpAddr, advertise, logLevel, queues string
	join                                                      []string
	bootstrapExpect                                           int
	enableDebug                                               bool
	hbInterval, hbTimeout, retention                          time.Duration
	maxFinished                                               int
	preemption                                                bool
	preemptGrace                                              time.Duration
}

func (f *serverFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML file of flag values (keys are flag names)")
	fl.StringVar(&f.name, "name", "", "server name, unique in the cluster (default: hostname)")
	fl.StringVar(&f.data, "data", "", "data directory for the raft log and snapshots (required)")
	fl.StringVar(&f.httpAddr, "http", "127.0.0.1:7070", "address the server listens on: the HTTP API and raft share it")
	fl.StringVar(&f.advertise, "advertise", "", "host:port other servers and clients reach this server on (default: --http)")
	fl.IntVar(&f.bootstrapExpect, "bootstrap-expect", 0, "servers to wait for before a new cluster forms (0: 1 without --join, else join an existing cluster)")
	fl.StringSliceVar(&f.join, "join", nil, "addresses of other servers, comma-separated: peers to bootstrap with, or a cluster to join")
	fl.DurationVar(&f.hbInterval, "heartbeat-interval", time.Second, "how often agents heartbeat")
	fl.DurationVar(&f.hbTimeout, "heartbeat-timeout", 10*time.Second, "a node is down after this long without a heartbeat")
	fl.DurationVar(&f.retention, "job-retention", 24*time.Hour, "how long finished jobs stay queryable")
	fl.IntVar(&f.maxFinished, "max-finished-jobs", 100000, "at most this many finished jobs are kept (those that ended first go first)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.queues, "queues", "", "YAML file of queues (tree, quotas, weights) applied whenever this server becomes leader")
	fl.BoolVar(&f.enableDebug, "enable-debug", false, "serve Go profiles under /debug/pprof/ on the HTTP address")
	fl.BoolVar(&f.preemption, "preemption", true, "let waiting jobs stop lower-priority jobs of their queue and jobs of queues borrowing their quota (--preemption=false: never)")
	fl.DurationVar(&f.preemptGrace, "preempt-grace", server.DefaultPreemptGrace, "time a preempted task has between SIGTERM and SIGKILL to checkpoint")
}

// configureServerCommand turns the CLI's `dure server` group into the server
// daemon; its client verbs (members, remove, join) stay as subcommands.
func configureServerCommand(cmd *cobra.Command) {
	var f serverFlags
	cmd.Short = "Run a control-plane server (raft-replicated state, scheduler, HTTP API)"
	cmd.Long = "dure server runs one control-plane server. One server is a complete cluster;\n" +
		"three or five tolerate one or two failures:\n" +
		"  dure server --name s1 --http 10.0.0.1:7070 --bootstrap-expect 3 --join 10.0.0.2:7070,10.0.0.3:7070 --data …\n" +
		"Subcommands manage a running cluster's servers."
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		tuneGC()
		if err := loadConfigFile(cmd, f.config); err != nil {
			return err
		}
		if f.data == "" {
			return errors.New("--data is required: the directory that holds the raft log and snapshots")
		}
		log, err := newLogger(f.logLevel)
		if err != nil {
			return err
		}
		relaxTimers(log)
		ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		srv, lis, err := startServer(f, log)
		if err != nil {
			return err
		}
		log.Info("dure server started", "http", lis.Addr().String(), "advertise", srv.srv.Advertise(), "data", f.data)
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			return srv.shutdown()
		case <-srv.srv.Halted():
			_ = srv.shutdown()
			return fmt.Errorf("%w\nUpgrade this server's dure and start it again: it catches up from its data directory (docs/operations.md, Upgrading)", srv.srv.HaltErr())
		}
	}
	f.register(cmd)
}

// runningServer is a started control-plane server with its HTTP API.
type runningServer struct {
	srv  *server.Server
	http *http.Server
}

func startServer(f serverFlags, log *slog.Logger) (*runningServer, net.Listener, error) {
	if f.preemptGrace <= 0 {
		return nil, nil, fmt.Errorf("--preempt-grace %s: must be positive (a preempted task needs time to stop)", f.preemptGrace)
	}
	// The server would silently take its defaults (24h, 100000) for these.
	if f.retention <= 0 {
		return nil, nil, fmt.Errorf("--job-retention %s: must be positive (how long finished jobs stay queryable)", f.retention)
	}
	if f.maxFinished < 1 {
		return nil, nil, fmt.Errorf("--max-finished-jobs %d: must be at least 1", f.maxFinished)
	}
	lis, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on --http %s: %w", f.httpAddr, err)
	}
	queues, err := loadQueues(f.queues)
	if err != nil {
		lis.Close()
		return nil, nil, err
	}
	advertise, err := advertiseAddr(f.advertise, lis.Addr())
	if err != nil {
		lis.Close()
		return nil, nil, err
	}
	httpL, raftL := server.Multiplex(lis, advertise)
	srv, err := server.New(server.Config{
		Name: f.name, DataDir: f.data, RaftStream: raftL,
		Bootstrap:       f.bootstrapExpect == 1 || (f.bootstrapExpect == 0 && len(f.join) == 0),
		BootstrapExpect: f.bootstrapExpect, Join: f.join,
		HeartbeatInterval: f.hbInterval, HeartbeatTimeout: f.hbTimeout,
		JobRetention: f.retention, MaxFinishedJobs: f.maxFinished, Logger: log, Queues: queues,
		Sched: sched.Config{NoPreemption: !f.preemption, PreemptGrace: f.preemptGrace},
	})
	if err != nil {
		lis.Close()
		return nil, nil, err
	}
	var handler http.Handler = httpapi.New(srv, version, log)
	if f.enableDebug {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.Handle("/", handler)
		handler = mux
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(httpL); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	return &runningServer{srv: srv, http: hs}, lis, nil
}

// advertiseAddr is the address others reach this server on: --advertise, or
// the listen address when that is a specific host.
func advertiseAddr(flag string, listen net.Addr) (net.Addr, error) {
	if flag != "" {
		a, err := net.ResolveTCPAddr("tcp", flag)
		if err != nil {
			return nil, fmt.Errorf("--advertise %q: %w", flag, err)
		}
		return a, nil
	}
	tcp := listen.(*net.TCPAddr)
	if tcp.IP.IsUnspecified() {
		return nil, fmt.Errorf("--http %s listens on every interface: set --advertise to the address other servers reach this one on", listen)
	}
	return tcp, nil
}

func (r *runningServer) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Blocking queries and log streams would hold Shutdown for their whole
	// wait: close connections after a short grace instead.
	go func() {
		time.Sleep(500 * time.Millisecond)
		_ = r.http.Close()
	}()
	_ = r.http.Shutdown(ctx)
	return r.srv.Shutdown()
}

// loadQueues reads a --queues file into domain queues, parents first.
func loadQueues(path string) ([]model.Queue, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--queues: %w", err)
	}
	f, err := spec.ParseQueueFile(b, true)
	if err != nil {
		return nil, fmt.Errorf("--queues %s: %w", path, err)
	}
	var out []model.Queue
	for i := range f.Queues {
		out = append(out, spec.QueueToModel(&f.Queues[i]))
	}
	return out, nil
}
