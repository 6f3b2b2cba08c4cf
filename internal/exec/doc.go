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
//
// # How a task runs
//
//	Runner.Start ── mkdir <Dir>/<ID>, write spec.json ── fork/exec supervisor (own session)
//	supervisor ──── pid file, scratch/, stdout, stderr, task cgroup + limits
//	            ── start the task in its own process group, inside the cgroup
//	            ── "ok <start time>" on fd 3 ──▶ Start returns
//	            ── wait: walltime timer, SIGTERM from Stop (grace from the stop file)
//	            ── task exits: SIGKILL its group and cgroup, read the OOM counter,
//	               remove scratch/ and the cgroup, write status.json (temp + rename)
//	Runner ──────── pidfd of the supervisor polls readable ──▶ read status.json ──▶ TaskEvent
//
// The status file is the record: Finished and Recover read it, and it is
// written last, so its presence means the task and its cleanup are over.
// A supervisor that dies without writing it is "lost": the runner kills what
// is left in the task's cgroup and records ExitCode -1.
//
// The task enters its cgroup before its first instruction: on v2 through
// clone3(CLONE_INTO_CGROUP); on v1 the supervisor joins the task's cgroups,
// forks, and returns to its own (v1 has no clone-into-cgroup, and Go cannot
// run code in the child between fork and exec).
//
// Runners watch supervisors through pidfds registered with Go's poller, so a
// thousand running tasks cost a thousand descriptors, not a thousand threads.
//
// # What it must not do
//
// The supervise path (SupervisorMain) is the per-task launch cost: it must
// stay free of heavy initialisation and of imports beyond what it uses. The
// runner never kills tasks on Close (agent restarts must not), never starts a
// task ID twice, and never reads or writes cluster state.
package exec
