// Package server wires a dure server together: the Raft node (hashicorp/raft
// with a bolt log store and file snapshots), the FSM and state store, and the
// loops that run only on the leader — the scheduler loop with its plan
// verifier, the heartbeat monitor and the history pruner.
//
// Data flow (DESIGN.md §2): writes arrive through methods like SubmitJob,
// which assign IDs and times, encode an fsm command and raft.Apply it. The
// scheduler loop wakes on every state change, runs the pure sched.Schedule on
// a snapshot (its pending jobs and history window kept up to date from the
// store's job change feed, schedcache.go), re-checks the plan against the latest state and commits it as
// one log entry. Heartbeats stay out of the log: the leader keeps them in
// memory and logs only a node's transition to down.
//
// The server does not speak HTTP; internal/httpapi does, calling into it.
package server
