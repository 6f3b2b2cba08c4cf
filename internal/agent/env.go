package agent

import (
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/exec"
)

// DefaultPath is the PATH tasks get unless the base environment or the job sets one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultBaseEnv is the environment a task starts from when Config.BaseEnv is
// nil: PATH=DefaultPath, LANG=C.UTF-8, and HOME, USER and LOGNAME of the user
// the agent runs as (tasks run as that user), read from the user database —
// not from the agent's own environment, which tasks never inherit.
func DefaultBaseEnv() []string {
	env := []string{"PATH=" + DefaultPath, "LANG=C.UTF-8", "HOME=/"}
	if u, err := user.Current(); err == nil {
		if u.HomeDir != "" {
			env[2] = "HOME=" + u.HomeDir
		}
		if u.Username != "" {
			env = append(env, "USER="+u.Username, "LOGNAME="+u.Username)
		}
	}
	return env
}

// taskEnv builds a task's environment: base, then the job's env on top, then
// the variables dure sets, which a job cannot override. DURE_NTASKS is the
// number of tasks the attempt started with (fewer than the job's tasks for
// a gang that started with its minimum); array elements also get their
// array's ID and their index. The result is sorted by name. exec adds DURE_SCRATCH, CUDA_VISIBLE_DEVICES and
// NVIDIA_VISIBLE_DEVICES itself.
func taskEnv(base []string, node string, a *api.Allocation) ([]string, error) {
	m := make(map[string]string, len(base)+len(a.Env)+16)
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	for k, v := range a.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("env: variable name %q must be non-empty and contain no '=' or NUL", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("env[%s]: value must not contain NUL", k)
		}
		m[k] = v
	}
	job := strconv.FormatUint(a.JobID, 10)
	task := strconv.Itoa(a.TaskIndex)
	ntasks := strconv.Itoa(max(a.TaskCount, 1))
	if a.ArrayJobID != 0 {
		arrayJob, index := strconv.FormatUint(a.ArrayJobID, 10), strconv.Itoa(a.ArrayTaskID)
		m["DURE_ARRAY_JOB_ID"], m["DURE_ARRAY_TASK_ID"] = arrayJob, index
		m["SLURM_ARRAY_JOB_ID"], m["SLURM_ARRAY_TASK_ID"] = arrayJob, index
	}
	for k, v := range map[string]string{
		"DURE_JOB_ID":     job,
		"DURE_JOB_NAME":   a.JobName,
		"DURE_TASK_INDEX": task,
		"DURE_NTASKS":     ntasks,
		"DURE_ALLOC_ID":   a.ID,
		"DURE_ATTEMPT":    strconv.Itoa(a.Attempt),
		"DURE_NODE":       node,
		"DURE_GROUP":      a.Group,
		"SLURM_JOB_ID":    job,
		"SLURM_JOBID":     job,
		"SLURM_PROCID":    task,
		"SLURM_NTASKS":    ntasks,
		"SLURM_JOB_NAME":  a.JobName,
	} {
		m[k] = v
	}
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env, nil
}

// taskSpec translates an allocation into what exec runs.
func taskSpec(cfg *Config, a *api.Allocation) (exec.TaskSpec, error) {
	if len(a.Command) == 0 {
		return exec.TaskSpec{}, fmt.Errorf("command: empty")
	}
	env, err := taskEnv(cfg.BaseEnv, cfg.Name, a)
	if err != nil {
		return exec.TaskSpec{}, err
	}
	return exec.TaskSpec{
		ID:          a.ID,
		Command:     a.Command,
		Env:         env,
		WorkDir:     a.WorkDir,
		MilliCPU:    a.Resources.MilliCPU,
		MemoryBytes: a.Resources.MemoryBytes,
		GPUIndices:  a.GPUIndices,
		Walltime:    time.Duration(a.Walltime),
		KillGrace:   cfg.KillGrace,
	}, nil
}

// exitMessage says in words how a task ended, for `dure job` and `dure jobs`.
func exitMessage(r exec.Result, memLimit int64, walltime time.Duration, stopReason string) string {
	switch {
	case r.StartErr != "":
		return r.StartErr
	case r.OOMKilled && r.Signal == "" && r.ExitCode > 0:
		// The OOM killer killed a process of the task, not its main one
		// (cgroup v1 has no memory.oom.group): the main process chose its
		// own exit code, often 137 passed on by a shell.
		return fmt.Sprintf("exited with code %d after the OOM killer killed a process of the task%s", r.ExitCode, limitSuffix(memLimit))
	case r.OOMKilled && memLimit > 0:
		return fmt.Sprintf("killed by %s after exceeding memory limit %s", orSIGKILL(r.Signal), formatBytes(memLimit))
	case r.OOMKilled:
		return fmt.Sprintf("killed by %s: out of memory", orSIGKILL(r.Signal))
	case r.TimedOut:
		return fmt.Sprintf("walltime %s exceeded", walltime)
	case r.Stopped:
		if stopReason == "" {
			return "stopped"
		}
		return "stopped: " + stopReason
	case r.Signal != "":
		return "killed by " + r.Signal
	case r.ExitCode < 0 && r.Lost != "":
		return "lost: " + r.Lost
	case r.ExitCode < 0:
		return "lost: its supervisor ended without recording how the task ended"
	default:
		return fmt.Sprintf("exited with code %d", r.ExitCode)
	}
}

func limitSuffix(memLimit int64) string {
	if memLimit <= 0 {
		return ""
	}
	return " (memory limit " + formatBytes(memLimit) + ")"
}

func orSIGKILL(sig string) string {
	if sig == "" {
		return "SIGKILL"
	}
	return sig
}

// formatBytes prints a size the way users write it in job specs: 64MiB, 1.5GiB.
func formatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + units[i]
}
