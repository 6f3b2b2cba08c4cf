// Package sched decides where and when pending jobs run. It is a pure
// function of its input (DESIGN.md §2 rule 3):
//
//	plan := sched.Schedule(snapshot, now, cfg)
//
// The caller (the server's scheduler loop, `dure simulate`, tests) hands in a
// read-only Snapshot of nodes, live allocations, pending jobs, queues,
// recently finished jobs and the states of the jobs pending ones depend on;
// it gets back a Plan: placements for the jobs that start now, running jobs
// to preempt, reservations (planned starts) for blocked jobs, and a Reason
// for every pending job that does not start. Config.Policy picks dure's own
// policy (fair queues with quota borrowing, preemption, gangs, topology,
// backfill on predicted run times) or a textbook one (fifo, easy,
// conservative) for comparisons. Explain answers "why is my job pending,
// when will it start, what would make it sooner" with what-if runs.
//
// A caller that schedules pass after pass keeps a Scratch and calls
// scratch.Schedule instead: the same plan, with the pass's working memory
// (tens of megabytes for a long queue) reused rather than collected.
//
// The server verifies placements against the latest state (ComputeFree +
// VerifyJob, the same arithmetic the scheduler uses) and commits them in
// one log entry.
//
// What this package must not do: start goroutines, read the clock (time comes
// in as `now`), use randomness, log, do I/O, mutate its input, or let map
// iteration order reach its output. The same input always yields an
// identical plan, whatever the order of the input slices. It imports only the
// standard library and internal/model; internal/archtest enforces this.
//
// README.md in this directory draws the scheduling pass, states the policy
// and its arithmetic, and defines its terms.
package sched
