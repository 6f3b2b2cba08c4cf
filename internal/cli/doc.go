// Package cli implements the user-facing client verbs of the dure binary:
// submit, run, sbatch, jobs, job, wait, logs, cancel, nodes, node, queues,
// status and bench. cmd/dure builds the root command with NewRootCommand,
// adds the daemon subcommands (server, agent, dev, …) and runs it with
// Execute, which prints errors as "dure: …" and picks the exit code.
//
// The CLI is a client like any other: it talks to servers only through
// internal/api over HTTP. It must not import server-side packages (state,
// fsm, sched, server, httpapi, agent, exec); internal/spec is used only to
// parse and check job files locally for fast, clear errors (the server
// validates again), and internal/model only for its formatting helpers.
//
// It reads nothing from the process directly: the environment comes in as a
// lookup function and the standard streams as readers and writers, so tests
// drive every verb with a map and buffers.
package cli
