package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/httpapi"
	"github.com/durehq/dure/internal/server"
)

type serverFlags struct {
	config, name, data, httpAddr, raftAddr, raftAdvertise, logLevel string
	bootstrap, enableDebug                                          bool
	hbInterval, hbTimeout, retention                                time.Duration
	maxFinished                                                     int
}

func (f *serverFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML file of flag values (keys are flag names)")
	fl.StringVar(&f.name, "name", "", "server name, unique in the cluster (default: hostname)")
	fl.StringVar(&f.data, "data", "", "data directory for the raft log and snapshots (required)")
	fl.StringVar(&f.httpAddr, "http", "127.0.0.1:7070", "address the HTTP API listens on")
	fl.StringVar(&f.raftAddr, "raft", "", "address raft listens on (default: the HTTP port + 1)")
	fl.StringVar(&f.raftAdvertise, "raft-advertise", "", "raft address other servers use (default: --raft)")
	fl.BoolVar(&f.bootstrap, "bootstrap", true, "make a fresh data directory a one-server cluster")
	fl.DurationVar(&f.hbInterval, "heartbeat-interval", time.Second, "how often agents heartbeat")
	fl.DurationVar(&f.hbTimeout, "heartbeat-timeout", 10*time.Second, "a node is down after this long without a heartbeat")
	fl.DurationVar(&f.retention, "job-retention", 24*time.Hour, "how long finished jobs stay queryable")
	fl.IntVar(&f.maxFinished, "max-finished-jobs", 100000, "at most this many finished jobs are kept (oldest go first)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.BoolVar(&f.enableDebug, "enable-debug", false, "serve Go profiles under /debug/pprof/ on the HTTP address")
}

// raftAddrFor derives the default raft address from the HTTP address.
func raftAddrFor(httpAddr string) (string, error) {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "", fmt.Errorf("--http %q: %w", httpAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 {
		return "", fmt.Errorf("--http %q: give a fixed port, or set --raft", httpAddr)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1)), nil
}

func serverCommand() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a control-plane server (raft-replicated state, scheduler, HTTP API)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			srv, lis, err := startServer(f, log)
			if err != nil {
				return err
			}
			log.Info("dure server started", "http", lis.Addr().String(), "data", f.data)
			return serveUntilDone(ctx, srv, lis, log)
		},
	}
	f.register(cmd)
	return cmd
}

// runningServer is a started control-plane server with its HTTP API.
type runningServer struct {
	srv  *server.Server
	http *http.Server
}

func startServer(f serverFlags, log *slog.Logger) (*runningServer, net.Listener, error) {
	lis, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on --http %s: %w", f.httpAddr, err)
	}
	raftAddr := f.raftAddr
	if raftAddr == "" {
		if raftAddr, err = raftAddrFor(lis.Addr().String()); err != nil {
			lis.Close()
			return nil, nil, err
		}
	}
	srv, err := server.New(server.Config{
		Name: f.name, DataDir: f.data, RaftBind: raftAddr, RaftAdvertise: f.raftAdvertise,
		Bootstrap: f.bootstrap, HeartbeatInterval: f.hbInterval, HeartbeatTimeout: f.hbTimeout,
		JobRetention: f.retention, MaxFinishedJobs: f.maxFinished, Logger: log,
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
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	return &runningServer{srv: srv, http: hs}, lis, nil
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

func serveUntilDone(ctx context.Context, r *runningServer, _ net.Listener, log *slog.Logger) error {
	<-ctx.Done()
	log.Info("shutting down")
	return r.shutdown()
}
