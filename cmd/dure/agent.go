package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/agent"
	"github.com/durehq/dure/internal/exec"
	"github.com/durehq/dure/internal/spec"
)

type agentFlags struct {
	config, name, servers, listen, advertise, data, logLevel string
	labels                                                   []string
	cpus, mem, scratch                                       string
	gpus                                                     int
	gpuCommand, cgroups, cgroupParent, supervisor            string
	killGrace, logRetention                                  time.Duration
	maxEndedTasks                                            int
}

func (f *agentFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML file of flag values (keys are flag names)")
	fl.StringVar(&f.name, "name", "", "node name (default: hostname)")
	fl.StringVar(&f.servers, "servers", "", "comma-separated server addresses, e.g. 10.0.0.1:7070,10.0.0.2:7070 (required)")
	fl.StringVar(&f.listen, "listen", "0.0.0.0:7072", "address of the agent's HTTP listener (task logs)")
	fl.StringVar(&f.advertise, "advertise", "", "host:port servers use to reach --listen (default: detected)")
	fl.StringVar(&f.data, "data", "/var/lib/dure/agent", "data directory (task directories and logs)")
	fl.StringArrayVar(&f.labels, "label", nil, "node label key=value (repeatable), e.g. --label pool=gpu --label rack=r1")
	fl.StringVar(&f.cpus, "cpus", "", "CPUs to offer, e.g. 8 or 7500m (default: detected)")
	fl.StringVar(&f.mem, "mem", "", "memory to offer, e.g. 64G (default: detected)")
	fl.StringVar(&f.scratch, "scratch", "", "scratch disk to offer, e.g. 500G (default: free space of --data)")
	fl.IntVar(&f.gpus, "gpus", -1, "number of GPUs to offer as indices 0..N-1 (default: detected with nvidia-smi)")
	hideSentinelDefault(cmd, "gpus") // -1 means "detect": the usage says so
	fl.StringVar(&f.gpuCommand, "gpu-command", "nvidia-smi", "nvidia-smi to run for GPU discovery")
	fl.StringVar(&f.cgroups, "cgroups", "auto", "cgroup driver: auto, v1, v2 or off (no limits enforced)")
	fl.StringVar(&f.cgroupParent, "cgroup-parent", "", "cgroup path for task cgroups (default: dure/<name>)")
	fl.StringVar(&f.supervisor, "supervisor", exec.SupervisorNode, "how tasks are parented: node (one long-lived supervisor daemon per agent; cheap) or task (one supervisor process per task)")
	fl.DurationVar(&f.killGrace, "kill-grace", exec.DefaultKillGrace, "pause between SIGTERM and SIGKILL when a task is stopped")
	fl.DurationVar(&f.logRetention, "log-retention", agent.DefaultLogRetention, "how long an ended task's logs are kept")
	fl.IntVar(&f.maxEndedTasks, "max-ended-tasks", agent.DefaultMaxEndedTasks, "at most this many ended tasks' logs are kept (those that ended first go first)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
}

// agentConfig turns flags into an agent.Config.
func (f *agentFlags) agentConfig() (agent.Config, error) {
	cfg := agent.Config{
		Name: f.name, Listen: f.listen, Advertise: f.advertise, DataDir: f.data,
		GPUCommand: f.gpuCommand, KillGrace: f.killGrace, LogRetention: f.logRetention, MaxEndedTasks: f.maxEndedTasks, Version: version,
		Exec: exec.Config{Cgroups: f.cgroups, CgroupParent: f.cgroupParent, Supervisor: f.supervisor},
	}
	for _, s := range strings.Split(f.servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Servers = append(cfg.Servers, s)
		}
	}
	var err error
	if cfg.Labels, err = parseLabels(f.labels); err != nil {
		return cfg, err
	}
	if f.cpus != "" {
		if cfg.MilliCPU, err = spec.ParseCPU(f.cpus); err != nil {
			return cfg, fmt.Errorf("--cpus: %w", err)
		}
	}
	if f.mem != "" {
		if cfg.MemoryBytes, err = spec.ParseSize(f.mem); err != nil {
			return cfg, fmt.Errorf("--mem: %w", err)
		}
	}
	if f.scratch != "" {
		if cfg.ScratchBytes, err = spec.ParseSize(f.scratch); err != nil {
			return cfg, fmt.Errorf("--scratch: %w", err)
		}
	}
	if f.gpus >= 0 {
		n := f.gpus
		cfg.GPUs = &n
	}
	self, err := os.Executable()
	if err != nil {
		return cfg, fmt.Errorf("find the dure binary to start task supervisors: %w", err)
	}
	cfg.Exec.SupervisorCommand = []string{self, "supervise"}
	return cfg, nil
}

func agentCommand() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node agent: report this machine's resources and run the tasks placed on it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tuneGC()
			if err := loadConfigFile(cmd, f.config); err != nil {
				return err
			}
			if f.servers == "" {
				return errors.New("--servers is required: the addresses of the dure servers")
			}
			log, err := newLogger(f.logLevel)
			if err != nil {
				return err
			}
			relaxTimers(log)
			cfg, err := f.agentConfig()
			if err != nil {
				return err
			}
			cfg.Logger = log
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	f.register(cmd)
	return cmd
}

// hideSentinelDefault keeps --help from printing "(default -1)" after a
// usage text that already says what leaving the flag out does: pflag prints
// the default of an int flag unless it reads "0".
func hideSentinelDefault(c *cobra.Command, name string) {
	c.Flags().Lookup(name).DefValue = "0"
}
