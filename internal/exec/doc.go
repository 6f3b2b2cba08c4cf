// Package exec runs tasks as real processes on this machine. Each task is
// put into its own cgroup with the task's CPU and memory limits (cgroup v1
// or v2) before its first instruction, sees only its GPUs, gets a private
// scratch directory (DURE_SCRATCH, removed when the task ends), writes
// stdout and stderr to files, is held to its walltime (SIGTERM, grace,
// SIGKILL), and has how it ended (exit code, signal, OOM kill) recorded in a
// status file.
//
// Tasks are parented by a supervisor, not by the agent, so an agent can
// restart without killing tasks and still learn their exit codes. There are
// two supervisor modes (Config.Supervisor), with the same Runner API:
//
//   - "node" (default): one long-lived supervisor daemon per runner
//     directory (the dure binary re-executed as "dure supervise --node
//     DIR", in its own session). It forks every task itself; runners talk
//     to it over a unix socket. No process start per task: about 2 ms of
//     CPU and wall time per trivial task instead of 7–10 ms, most of it the
//     task's own fork/exec (docs/exec.md has the numbers).
//   - "task": one supervisor process per task ("dure supervise TASKDIR").
//     Simplest, and each task's supervisor is independent of the others.
//
// This package knows nothing about the control plane: the agent
// (internal/agent) translates allocations into TaskSpecs.
//
// # Node mode
//
//	NewRunner ──── connect <Dir>/supervisor.sock; if nobody answers, start a
//	               daemon (it flocks <Dir>/supervisor.lock: one per Dir) and connect
//	Start ──────── "start" ──▶ daemon: rename a spare task directory (made
//	               ahead: scratch/, stdout, stderr) to <Dir>/<ID>, rename a
//	               spare v1 cgroup into place (or mkdir both), limits,
//	               fork/exec into the cgroup, journal line ──▶ reply (Start
//	               returns) ──▶ supervise: the reaper's exit, walltime
//	               timer, stop requests
//	task exits ─── kill its group and cgroup, wait4 it, read the OOM counter,
//	               keep the empty scratch/ and the cgroup as spares (or
//	               remove them), write status.json, journal line ──▶ end
//	               event to every connected runner ──▶ TaskEvent
//
// The daemon's own threads run with 1 ms of timer slack, which spares most
// of Go's sysmon wake-ups while it works; tasks are forked with the slack
// the daemon started with (timerslack.go).
//
// The daemon exits when it has neither tasks nor clients. Close disconnects
// (tasks and daemon run on); a new Runner on the same Dir reconnects and
// Recover lists what runs and what ended. If the daemon dies, its tasks
// live on (orphaned to init); the next daemon — started by the next
// NewRunner, or at once by a connected runner that sees its connection
// break — reads <Dir>/supervisor.journal, watches the still running tasks
// by pidfd (walltime and Stop keep working) and records every one of them
// with ExitCode -1 and Result.Lost, because only a process's parent learns
// its exit status. Shutdown stops the daemon for good (optionally killing
// its tasks).
//
// # Task mode
//
//	Runner.Start ── mkdir <Dir>/<ID>, write spec.json ── fork/exec supervisor (own session)
//	supervisor ──── pid file, then as the daemon does for one task; "ok <start
//	                time>" on fd 3 ──▶ Start returns
//	Runner ──────── pidfd of the supervisor polls readable ──▶ status.json ──▶ TaskEvent
//
// A supervisor that dies without writing the status file is "lost": the
// runner kills what is left in the task's cgroup and records ExitCode -1.
//
// # Shared rules
//
// The status file is the record: Finished and Recover read it, and it is
// written last (temporary file and rename), so its presence means the task
// and its cleanup are over. taskRun holds the per-task logic both
// supervisors run.
//
// The task enters its cgroup before its first instruction: on v2 through
// clone3(CLONE_INTO_CGROUP); on v1 one thread of the supervisor (locked to
// its goroutine) moves into the task's cgroups through their "tasks" files,
// forks, and moves back; the Go runtime never clones threads from a locked
// thread, so no other supervisor thread is ever in a task's cgroup.
//
// The node daemon's children are waited for by one reaper (reap.go): on
// SIGCHLD it peeks at each exited child (waitid WNOWAIT), kills a task
// leader's process group, reaps the leader and hands its status to the
// task's goroutine; stray orphans of tasks, which it adopts as subreaper,
// are just reaped. Other exits (the per-task supervisor's task, tasks a
// restarted daemon adopted, supervisors seen by the runner) are watched
// through pidfds registered with Go's poller, so a thousand running tasks
// cost a thousand descriptors, not a thousand threads.
//
// # What it must not do
//
// The supervise path (SupervisorMain) must stay free of heavy
// initialisation and of imports beyond what it uses: in task mode it is the
// per-task launch cost. Per task the node daemon creates four inodes (task
// dir, stdout, stderr, status; scratch directories are reused), made ahead
// of the start in spare directories (dirpool.go), and no process but the
// task: do not add files or processes lightly. Task cgroups are reused the
// same way on v1 (cgpool.go). The runner never kills tasks on Close
// (agent restarts must not), never starts a task ID twice, and never reads
// or writes cluster state.
package exec
