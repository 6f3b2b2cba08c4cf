// Package fsm defines the commands of the replicated log and applies them to
// the state store. Every change of cluster state is one of these commands.
//
// Apply is deterministic (DESIGN.md rule 2): it never reads the clock, random
// numbers, the environment or map iteration order. Times, IDs and fencing
// terms are assigned by the leader before proposal and carried in the
// command. Command types are append-only: a type number, once used, keeps its
// meaning forever, and its payload only gains optional fields.
//
// An entry that cannot be decoded is skipped by every replica alike, except
// one written by a newer dure (a higher encoding version or an unknown
// command type, ErrNewerEntry): that one halts the FSM for good, because an
// older replica skipping what newer ones apply would diverge silently. The
// server then stops and asks to be upgraded (docs/operations.md, Upgrading).
//
// This package must not import raft, the server or the HTTP layer; the
// server adapts FSM to raft.FSM.
package fsm
