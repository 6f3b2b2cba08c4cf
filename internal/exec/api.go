package exec

import (
	"log/slog"
	"time"
)

// TaskSpec is everything needed to run one task (one allocation) on this node.
type TaskSpec struct {
	// ID is the allocation ID. It names the task's directory and cgroup and
	// must match [A-Za-z0-9._-]+.
	ID      string
	Command []string // argv; Command[0] is looked up in PATH
	// Env is the task's complete environment ("K=V"); the runner adds
	// DURE_SCRATCH, CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES to it.
	Env     []string
	WorkDir string // "" means the task's directory

	MilliCPU    int64 // CPU limit in millicores (cgroup cpu quota); 0 = unlimited
	MemoryBytes int64 // memory limit; exceeding it gets the task OOM-killed; 0 = unlimited
	GPUIndices  []int // visible GPUs; nil/empty hides all GPUs ("CUDA_VISIBLE_DEVICES=")

	Walltime  time.Duration // 0 = no limit; at the limit: SIGTERM, KillGrace, SIGKILL
	KillGrace time.Duration // 0 means DefaultKillGrace
}

// DefaultKillGrace is the pause between SIGTERM and SIGKILL.
const DefaultKillGrace = 10 * time.Second

// Result is how a task ended.
type Result struct {
	ExitCode  int    // exit status; 128+signal when killed by a signal (shell convention)
	Signal    string // "SIGKILL", "SIGTERM", … when killed by a signal
	OOMKilled bool   // the kernel's OOM killer fired inside the task's cgroup
	TimedOut  bool   // killed for exceeding its walltime
	Stopped   bool   // killed because Stop was called
	StartErr  string // non-empty if the command could not be started at all
	// Lost says why the exit status is unknown (ExitCode is then -1): the
	// supervisor died or was restarted while the task ran.
	Lost       string
	StartedAt  time.Time // when the task process was started
	FinishedAt time.Time
}

// TaskEvent reports that a task ended. The runner sends one per task started
// through Start (and per task found by Recover that later ends).
type TaskEvent struct {
	ID     string
	Result Result
}

// Config configures a Runner.
type Config struct {
	// Dir holds one directory per task: <Dir>/<ID>/ with stdout, stderr,
	// the supervisor's status file and the scratch directory.
	Dir string
	// SupervisorCommand starts the supervisor: the dure binary re-executed,
	// e.g. []string{"/usr/bin/dure", "supervise"}. The runner appends its own
	// arguments. Tests may point it at a test binary.
	SupervisorCommand []string
	// Cgroups selects the cgroup driver: "auto" (detect v2 or v1), "v1",
	// "v2" or "off" (no limits enforced; for machines where cgroups are not
	// writable — the agent logs a warning).
	Cgroups string
	// Supervisor selects what parents the tasks: "node" (the default) is
	// one long-lived supervisor daemon per Dir that forks every task
	// itself; "task" is one supervisor process per task. Both survive the
	// agent. See doc.go for the trade-off and docs/exec.md for the numbers.
	Supervisor string
	// CgroupParent is the path under each hierarchy's root where task
	// cgroups are made, e.g. "dure/node1"; created if missing.
	CgroupParent string
	Logger       *slog.Logger
}
