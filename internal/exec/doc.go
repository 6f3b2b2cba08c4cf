// Package exec runs tasks as real processes on this machine: each task is
// started by a small supervisor process (the dure binary re-executed with the
// hidden "supervise" subcommand) that is the task's parent, puts it into its
// own cgroup with the task's CPU and memory limits (cgroup v1 or v2), makes
// only its GPUs visible, gives it a private scratch directory (DURE_SCRATCH,
// removed when the task ends), writes stdout and stderr to files, enforces the
// walltime (SIGTERM, grace, SIGKILL), and records how the task ended
// (exit code, signal, OOM kill) in a status file.
//
// Because the supervisor, not the agent, is the task's parent, an agent can
// restart without killing tasks and still learn their exit codes.
//
// This package knows nothing about the control plane: the agent (internal/agent)
// translates allocations into TaskSpecs.
package exec
