package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/agent"
	"github.com/durehq/dure/internal/exec"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/server"
)

func devCommand() *cobra.Command {
	var (
		agents                int
		addr, data, logLevel  string
		cgroups               string
		gpusPerAgent          int
		hbInterval, hbTimeout time.Duration
		enableDebug           bool
		supervisor            string
		queues                string
		preemptGrace          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole cluster in one process: one server and N agents sharing this machine",
		Long: "dure dev starts one server and N agents in this process, each agent offering an\n" +
			"equal share of this machine's CPUs and memory. Data lives in a temporary directory\n" +
			"removed at exit (in memory, on /dev/shm, when that has room and TMPDIR is unset,\n" +
			"like other schedulers' dev modes), unless --data is given: then a restart keeps\n" +
			"every job and node.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tuneGC()
			tuneDevProcs()
			if agents < 1 || agents > 64 {
				return fmt.Errorf("--agents %d: must be between 1 and 64", agents)
			}
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			relaxTimers(log)
			temporary := data == ""
			if temporary {
				if data, err = os.MkdirTemp(devTempParent(), "dure-dev-"); err != nil {
					return err
				}
				defer os.RemoveAll(data)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDev(ctx, cmd.OutOrStdout(), devOptions{
				agents: agents, addr: addr, data: data, temporary: temporary, cgroups: cgroups,
				gpusPerAgent: gpusPerAgent, hbInterval: hbInterval, hbTimeout: hbTimeout, log: log, enableDebug: enableDebug,
				supervisor: supervisor, queues: queues, preemptGrace: preemptGrace,
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&agents, "agents", 2, "number of agents (nodes) to run")
	fl.StringVar(&addr, "addr", "127.0.0.1:7070", "address of the HTTP API")
	fl.StringVar(&data, "data", "", "data directory; a restart with the same one keeps all state (default: temporary)")
	fl.StringVar(&cgroups, "cgroups", "auto", "cgroup driver for tasks: auto, v1, v2 or off")
	fl.IntVar(&gpusPerAgent, "gpus", -1, "GPUs each agent offers as indices 0..N-1 (default: real GPUs, all on the first agent)")
	hideSentinelDefault(cmd, "gpus") // -1 means "detect": the usage says so
	fl.DurationVar(&hbInterval, "heartbeat-interval", time.Second, "how often agents heartbeat")
	fl.DurationVar(&hbTimeout, "heartbeat-timeout", 10*time.Second, "a node is down after this long without a heartbeat")
	fl.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	fl.BoolVar(&enableDebug, "enable-debug", false, "serve Go profiles under /debug/pprof/ on the API address")
	fl.StringVar(&queues, "queues", "", "YAML file of queues (tree, quotas, weights) to create")
	fl.DurationVar(&preemptGrace, "preempt-grace", server.DefaultPreemptGrace, "time a preempted task has between SIGTERM and SIGKILL to checkpoint")
	fl.StringVar(&supervisor, "supervisor", exec.SupervisorNode, "how tasks are parented: node (one supervisor daemon per agent) or task (one per task)")
	return cmd
}

type devOptions struct {
	agents                int
	addr, data, cgroups   string
	temporary             bool
	gpusPerAgent          int
	hbInterval, hbTimeout time.Duration
	enableDebug           bool
	supervisor            string
	queues                string
	preemptGrace          time.Duration
	log                   *slog.Logger
}

func runDev(ctx context.Context, out io.Writer, o devOptions) error {
	srv, lis, err := startServer(serverFlags{
		name: "dev-server", data: filepath.Join(o.data, "server"), httpAddr: o.addr, bootstrapExpect: 1,
		hbInterval: o.hbInterval, hbTimeout: o.hbTimeout, retention: 24 * time.Hour, maxFinished: 100000,
		enableDebug: o.enableDebug, queues: o.queues, preemption: true, preemptGrace: o.preemptGrace,
	}, o.log)
	if err != nil {
		return err
	}
	apiAddr := lis.Addr().String()
	// A lone server elects itself within a second or two; agents that
	// register before then only log retries a new user would take for errors.
	for deadline := time.Now().Add(10 * time.Second); !srv.srv.IsLeader() && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}

	// Each agent offers an equal share of the machine.
	probe := agent.Config{Name: "dev", Servers: []string{apiAddr}, DataDir: o.data, Logger: o.log, GPUs: new(int)}
	whole, err := agent.DetectResources(ctx, probe)
	if err != nil {
		_ = srv.shutdown()
		return err
	}
	share := func(v int64) int64 { return max(v/int64(o.agents), 1) }
	var wg sync.WaitGroup
	var names []string
	agentCtx, stopAgents := context.WithCancel(context.Background())
	for i := 1; i <= o.agents; i++ {
		f := agentFlags{
			name: fmt.Sprintf("dev-%d", i), servers: apiAddr, listen: "127.0.0.1:0",
			data: filepath.Join(o.data, "agents", fmt.Sprintf("dev-%d", i)), gpus: -1,
			gpuCommand: "nvidia-smi", cgroups: o.cgroups, cgroupParent: fmt.Sprintf("dure-dev-%d/dev-%d", os.Getpid(), i),
			killGrace: 10 * time.Second, logRetention: agent.DefaultLogRetention, maxEndedTasks: agent.DefaultMaxEndedTasks, supervisor: o.supervisor,
			labels: []string{fmt.Sprintf("rack=r%d", (i+1)/2)},
		}
		if !o.temporary {
			f.cgroupParent = fmt.Sprintf("dure-dev/dev-%d", i)
		}
		cfg, err := f.agentConfig()
		if err != nil {
			stopAgents()
			_ = srv.shutdown()
			return err
		}
		cfg.MilliCPU = share(whole.Capacity.MilliCPU)
		cfg.MemoryBytes = share(whole.Capacity.MemoryBytes)
		cfg.ScratchBytes = share(whole.Capacity.ScratchBytes)
		switch {
		case o.gpusPerAgent >= 0:
			n := o.gpusPerAgent
			cfg.GPUs = &n
		case i > 1: // real GPUs (if any) all go to the first agent: indices must not overlap
			cfg.GPUs = new(int)
		}
		cfg.Logger = o.log
		a, err := agent.New(cfg)
		if err != nil {
			stopAgents()
			_ = srv.shutdown()
			return err
		}
		names = append(names, cfg.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(agentCtx); err != nil {
				o.log.Error("agent stopped", "node", cfg.Name, "err", err)
			}
		}()
	}
	printDevBanner(out, apiAddr, o, names, share(whole.Capacity.MilliCPU), share(whole.Capacity.MemoryBytes))

	var haltErr error
	select {
	case <-ctx.Done():
	case <-srv.srv.Halted():
		haltErr = fmt.Errorf("%w\nThe data directory was written by a newer dure: run that one", srv.srv.HaltErr())
	}
	fmt.Fprintln(out, "\ndure dev: shutting down")
	if o.temporary {
		// Nobody will ever adopt these tasks: stop them before the data goes.
		stopActiveJobs(srv, 15*time.Second)
	}
	stopAgents()
	wg.Wait()
	if o.temporary {
		exec.RemoveCgroupTree(fmt.Sprintf("dure-dev-%d", os.Getpid()))
	}
	if err := srv.shutdown(); haltErr == nil {
		return err
	}
	return haltErr
}

// stopActiveJobs cancels every pending or running job and waits (bounded)
// until the agents report their tasks ended.
func stopActiveJobs(r *runningServer, limit time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	snap := r.srv.Store().Snapshot()
	for _, st := range []model.JobState{model.JobPending, model.JobRunning} {
		for _, j := range snap.JobsInState(st) {
			_ = r.srv.CancelJob(ctx, j.ID, "dure dev is shutting down")
		}
	}
	for ctx.Err() == nil && len(r.srv.Store().Snapshot().LiveAllocs()) > 0 {
		select {
		case <-r.srv.Store().Changed():
		case <-ctx.Done():
		}
	}
}

func printDevBanner(out io.Writer, apiAddr string, o devOptions, names []string, cpu, mem int64) {
	bin := "dure"
	if strings.Contains(os.Args[0], "/") && !strings.Contains(os.Args[0], "go-build") {
		bin = os.Args[0]
	}
	host, port, _ := net.SplitHostPort(apiAddr)
	url := "http://" + net.JoinHostPort(host, port)
	dataNote := o.data + " (temporary, removed at exit)"
	if !o.temporary {
		dataNote = o.data + " (kept: a restart recovers every job and node)"
	}
	fmt.Fprintf(out, `dure dev: 1 server and %d agent(s) running on this machine
  API:    %s
  nodes:  %s (each cpu=%s mem=%s)
  data:   %s

Try it from another terminal:
  export DURE_ADDR=%s
  %s run -- echo hello from dure       # run a job, stream its output
  %s submit --cpus 1 -- sleep 30       # submit a job; prints its ID
  %s jobs                              # list jobs
  %s nodes                             # list nodes

Press Ctrl-C to stop.
`, len(names), url, strings.Join(names, ", "), model.FormatMilliCPU(cpu), model.FormatBytes(mem), dataNote, url, bin, bin, bin, bin)
}

// devTempParent is where a temporary dev cluster keeps its data: /dev/shm
// when it is a writable tmpfs with room (the data dies with the process
// anyway, and a raft fsync or a task directory costs nothing there), else
// the system's temporary directory. A set TMPDIR always wins.
func devTempParent() string {
	const shm, minFree = "/dev/shm", 1 << 30
	if os.Getenv("TMPDIR") != "" {
		return ""
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(shm, &st); err != nil || st.Type != tmpfsMagic || st.Bavail*uint64(st.Bsize) < minFree {
		return ""
	}
	if syscall.Access(shm, 2 /* W_OK */) != nil {
		return ""
	}
	return shm
}

const tmpfsMagic = 0x01021994
