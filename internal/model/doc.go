// Package model holds the domain types shared by the scheduler (sched) and the
// replicated state (state, fsm): nodes, jobs, task groups, allocations, queues
// and resources.
//
// It must import only the standard library. These types are neither the wire
// format (see internal/api) nor the log format (see internal/fsm); those layers
// translate at their edges so each can change on its own schedule.
//
// Values stored in the state store are treated as immutable: code that wants
// to change a Job or Allocation copies it first (Copy methods below).
package model
