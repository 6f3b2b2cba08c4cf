// Package agent is the node agent behind `dure agent`: it detects the node's
// resources, registers with the servers and heartbeats, watches the node's
// allocations with blocking queries, runs each allocation as a task through
// internal/exec, reports task state changes to the servers in batches, and
// serves task logs over its own HTTP listener (the servers proxy `dure logs`
// to it).
//
// Rules this package keeps:
//   - It talks to the servers only through internal/api's Client, and fails
//     over between servers on transport errors and 5xx answers.
//   - It runs processes only through internal/exec. Tasks belong to their
//     supervisors, not to the agent: stopping the agent never kills them, and
//     a restarted agent adopts them (exec refuses a second start of the same
//     allocation ID, and the agent never starts an allocation the servers
//     already consider started).
//   - An allocation is started at most once per agent process (a record per
//     ID) and its end is reported once; updates for one allocation are never
//     reordered.
//   - It holds no cluster state: what runs here is what the servers list.
//
// It must not read flags or the process environment (cmd/ does, and passes a
// Config), and it must not use global loggers or random sources.
package agent
