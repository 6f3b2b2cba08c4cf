// Package sim replays workload traces through the real scheduler on a
// virtual cluster with a virtual clock: the engine behind `dure simulate` and
// `dure bench sched`.
//
// It has four parts:
//
//   - readers and converters for outside traces: the Standard Workload Format
//     of the Parallel Workloads Archive (ReadSWF), the Philly GPU job summary
//     (ReadPhilly) and Alibaba's openb pod and node lists (ReadOpenBPods,
//     ReadOpenBNodes), all producing a Trace;
//   - a cluster description grammar for --nodes (ParseNodes);
//   - the event loop (Run): arrivals and completions in virtual time, one call
//     of sched.Schedule at every instant something happened, placements and
//     preemptions applied at once, completions at start + actual runtime;
//   - metrics and pictures (Metrics, WriteSVGs), and a generator of large
//     synthetic clusters and queues for benchmarks (GenerateBench).
//
// What it must not do: reimplement any scheduling decision (every start,
// backfill and preemption comes from sched.Schedule), or let the scheduler see
// a job's actual runtime. A trace Job keeps its Runtime beside, not inside, the
// Request from which the scheduler's model.Job is built; the scheduler learns
// runtimes only from History, after jobs finish, as a real one would. The
// package reads the clock only to time benchmark passes, never to drive a
// simulation, and it defines no flags (cmd/dure does).
package zzsim
