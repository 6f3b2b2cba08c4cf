// Package state holds the cluster state in memory: tables of jobs,
// allocations, nodes and queues with their indexes, each a copy-on-write
// B-tree (tables.go). A write clones the current version and publishes the
// result whole; readers (the scheduler, the HTTP API) hold a version as a
// snapshot that never blocks writers and never sees a half-applied
// command. Blocking queries wait on watch channels the store hands out per
// job, per job's allocations, per node and for the jobs table (watch.go).
// The store also remembers which jobs its recent writes touched
// (SnapshotWithJobChanges), so that a reader keeping its own view of the
// jobs (the scheduler's pending list and history window) applies the
// changes instead of reading everything again. Finished jobs are also kept
// by end time (FinishedJobsByEnd), so the server finds the jobs to prune in
// what it prunes, not in everything it keeps.
//
// The tables replaced go-memdb (DESIGN.md §8 allowed either): its radix
// trees copied a node and made a channel per key byte for every index of
// every write, and were half the live heap of a server keeping 90,000
// finished jobs. BenchmarkJobLifecycle: 4x less time and 3x fewer bytes
// per job.
//
// The only writer is the FSM (internal/fsm), applying the replicated log.
// This package must not import raft, the server or the HTTP layer, and must
// not read the clock: every time it stores was carried in a log command.
package state
