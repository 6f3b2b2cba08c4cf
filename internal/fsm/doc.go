// Package fsm defines the commands of the replicated log and applies them to
// the state store. Every change of cluster state is one of these commands.
//
// Apply is deterministic (DESIGN.md rule 2): it never reads the clock, random
// numbers, the environment or map iteration order. Times, IDs and fencing
// terms are assigned by the leader before proposal and carried in the
// command. Command types are append-only: a type number, once used, keeps its
// meaning forever, and its payload only gains optional fields.
//
// This package must not import raft, the server or the HTTP layer; the
// server adapts FSM to raft.FSM.
package fsm
