package agent

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/durehq/dure/internal/exec"
)

// Defaults for Config fields left zero.
const (
	DefaultListen       = "0.0.0.0:7072" // a server uses 7070 (HTTP) and 7071 (raft)
	DefaultLogRetention = 24 * time.Hour
	// DefaultMaxEndedTasks matches the servers' default --max-finished-jobs:
	// at 1,000 short jobs a second, a day's retention alone would keep
	// 86 million task directories.
	DefaultMaxEndedTasks = 100_000
)

// Config configures an Agent. Zero values mean "default" or "detect".
type Config struct {
	// Name is the node's name; default: the machine's hostname.
	Name string
	// Servers are the control-plane addresses ("host:port" or
	// "http://host:port"). The agent talks to one at a time and moves to the
	// next on a transport error or a 5xx answer.
	Servers []string
	// Listen is the address of the agent's HTTP listener (task logs); default
	// DefaultListen. New opens it, so Addr is known before Run.
	Listen string
	// Advertise is the "host:port" the servers use to reach Listen. Default:
	// the listener's actual address; if it listens on all interfaces, the
	// first non-loopback IPv4 address of this machine (else the hostname).
	Advertise string
	// DataDir holds the agent's files; task directories live in DataDir/tasks
	// unless Exec.Dir says otherwise. Required; created if missing.
	DataDir string
	Labels  map[string]string

	// Resource overrides; zero means detect (see DetectResources).
	MilliCPU, MemoryBytes, ScratchBytes int64
	// GPUs: nil means detect with GPUCommand; set means that many devices
	// with indices 0..n-1 and no model (tests, odd hardware, GPUs hidden
	// from nvidia-smi).
	GPUs *int
	// GPUCommand is the nvidia-smi to run; default "nvidia-smi" from PATH.
	GPUCommand string
	// Custom counted resources this node offers (e.g. "license/matlab": 4).
	Custom map[string]int64

	// Exec is passed to exec.NewRunner. Dir defaults to DataDir/tasks,
	// Cgroups to "auto", CgroupParent to "dure/<Name>", Logger to Logger.
	Exec exec.Config
	// KillGrace is the pause between SIGTERM and SIGKILL when a task is
	// stopped or runs past its walltime; default exec.DefaultKillGrace.
	KillGrace time.Duration
	// LogRetention is how long an ended task's directory (its stdout and
	// stderr) is kept before it is removed; default DefaultLogRetention.
	LogRetention time.Duration
	// MaxEndedTasks caps how many ended tasks (their directories, logs
	// included, and what the agent remembers of them) are kept within
	// LogRetention: those that ended first go first. Default
	// DefaultMaxEndedTasks, as many as the servers keep finished jobs.
	MaxEndedTasks int
	// BaseEnv is the environment every task starts from ("K=V"); nil means
	// DefaultBaseEnv(). The agent never passes its own environment through:
	// cmd/ may put selected variables of it here.
	BaseEnv []string

	Logger  *slog.Logger
	Version string
}

// maxLabels is the most labels the servers accept for a node.
const maxLabels = 64

var (
	// Lengths (at most 253) are checked apart: a bounded repetition like
	// {0,252} compiles into a huge program at init, which every start of the
	// binary (one per task supervisor) would pay for.
	nodeNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	labelKeyRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
)

// withDefaults validates cfg and fills in defaults. Errors name the field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return cfg, fmt.Errorf("agent config: name: not set and the hostname is unknown: %w", err)
		}
		cfg.Name = h
	}
	if len(cfg.Name) > 253 || !nodeNameRe.MatchString(cfg.Name) {
		return cfg, fmt.Errorf("agent config: name %q: must start with a letter or digit and contain only letters, digits, '.', '_' and '-' (at most 253)", cfg.Name)
	}
	if len(cfg.Servers) == 0 {
		return cfg, fmt.Errorf("agent config: servers: at least one server address is required")
	}
	for i, s := range cfg.Servers {
		if strings.TrimSpace(s) == "" {
			return cfg, fmt.Errorf("agent config: servers[%d]: empty address", i)
		}
	}
	if cfg.DataDir == "" {
		return cfg, fmt.Errorf("agent config: data_dir: required (task directories and logs live there)")
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return cfg, fmt.Errorf("agent config: data_dir %q: %w", cfg.DataDir, err)
	}
	cfg.DataDir = abs
	if len(cfg.Labels) > maxLabels {
		return cfg, fmt.Errorf("agent config: labels: at most %d, got %d", maxLabels, len(cfg.Labels))
	}
	for k, v := range cfg.Labels {
		if len(v) > 253 {
			return cfg, fmt.Errorf("agent config: labels[%s]: value must be at most 253 bytes, got %d", k, len(v))
		}
		if len(k) > 253 || !labelKeyRe.MatchString(k) {
			return cfg, fmt.Errorf("agent config: labels: key %q must start with a letter or digit and contain only letters, digits, '.', '_', '/' and '-'", k)
		}
		if strings.ContainsAny(v, "\x00\n") {
			return cfg, fmt.Errorf("agent config: labels[%s]: value must not contain newlines or NUL", k)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"millicpu", cfg.MilliCPU}, {"memory_bytes", cfg.MemoryBytes}, {"scratch_bytes", cfg.ScratchBytes}} {
		if f.v < 0 {
			return cfg, fmt.Errorf("agent config: %s: must be >= 0 (0 means detect), got %d", f.name, f.v)
		}
	}
	if cfg.GPUs != nil && (*cfg.GPUs < 0 || *cfg.GPUs > 1024) {
		return cfg, fmt.Errorf("agent config: gpus: must be between 0 and 1024, got %d", *cfg.GPUs)
	}
	for k, v := range cfg.Custom {
		if k == "" || v < 0 {
			return cfg, fmt.Errorf("agent config: custom[%q]: want a non-empty name and a count >= 0, got %d", k, v)
		}
	}
	if cfg.KillGrace < 0 {
		return cfg, fmt.Errorf("agent config: kill_grace: must be >= 0, got %s", cfg.KillGrace)
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = exec.DefaultKillGrace
	}
	if cfg.LogRetention < 0 {
		return cfg, fmt.Errorf("agent config: log_retention: must be >= 0, got %s", cfg.LogRetention)
	}
	if cfg.LogRetention == 0 {
		cfg.LogRetention = DefaultLogRetention
	}
	if cfg.MaxEndedTasks < 0 {
		return cfg, fmt.Errorf("agent config: max_ended_tasks: must be >= 0, got %d", cfg.MaxEndedTasks)
	}
	if cfg.MaxEndedTasks == 0 {
		cfg.MaxEndedTasks = DefaultMaxEndedTasks
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Advertise != "" {
		if h, p, err := net.SplitHostPort(cfg.Advertise); err != nil || h == "" || p == "" || len(cfg.Advertise) > 256 {
			return cfg, fmt.Errorf("agent config: advertise %q: must be host:port (no scheme), e.g. 10.0.0.5:7072", cfg.Advertise)
		}
	}
	for i, kv := range cfg.BaseEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsRune(kv, 0) {
			return cfg, fmt.Errorf("agent config: base_env[%d] %q: want NAME=VALUE", i, kv)
		}
	}
	if cfg.BaseEnv == nil {
		cfg.BaseEnv = DefaultBaseEnv()
	}
	if cfg.Exec.Dir == "" {
		cfg.Exec.Dir = filepath.Join(cfg.DataDir, "tasks")
	}
	if cfg.Exec.Cgroups == "" {
		cfg.Exec.Cgroups = "auto"
	}
	if cfg.Exec.CgroupParent == "" {
		// Per node, so that agents sharing a machine (dure dev) never share one.
		cfg.Exec.CgroupParent = "dure/" + cfg.Name
	}
	if cfg.Exec.Logger == nil {
		cfg.Exec.Logger = cfg.Logger // exec adds its own component attribute
	}
	return cfg, nil
}
