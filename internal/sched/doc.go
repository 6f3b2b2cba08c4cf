// Package sched decides where pending jobs run. It is a pure function of its
// input (DESIGN.md §2 rule 3):
//
//	plan := sched.Schedule(snapshot, now, cfg)
//
// The caller (the server's scheduler loop, `dure simulate`, tests) hands in a
// read-only Snapshot of nodes, live allocations, pending jobs and queues; it
// gets back a Plan: placements for the jobs that start now, and a Reason for
// every pending job that does not. The server verifies the plan against the
// latest state (ComputeFree + VerifyJob, the same arithmetic the scheduler
// uses) and commits it in one log entry.
//
// What this package must not do: start goroutines, read the clock (time comes
// in as `now`), use randomness, log, do I/O, mutate its input, or let map
// iteration order reach its output. The same input always yields an
// identical plan, whatever the order of the input slices. It imports only the
// standard library and internal/model; internal/archtest enforces this.
//
// README.md in this directory draws the scheduling pass and defines its terms.
package sched
