// Package state holds the cluster state in memory: tables of jobs,
// allocations, nodes and queues with indexes, built on go-memdb's immutable
// radix trees. Readers (the scheduler, the HTTP API) work on snapshots that
// never block writers and never see a half-applied command; blocking queries
// wait on the watch channels memdb hands out. The store also remembers
// which jobs its recent writes touched (SnapshotWithJobChanges), so that a
// reader keeping its own view of the jobs (the scheduler's pending list and
// history window) applies the changes instead of reading everything again.
//
// The only writer is the FSM (internal/fsm), applying the replicated log.
// This package must not import raft, the server or the HTTP layer, and must
// not read the clock: every time it stores was carried in a log command.
package state
