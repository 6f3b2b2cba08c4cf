package main

import (
	"os"
	"runtime/debug"
)

// longRunningGCPercent is the garbage collector's target for the server,
// agent and dev processes when GOGC is not set: the heap may grow to three
// times what is live (Go's default is twice). Their heaps are small next to
// the machine (dure dev with 4,000 queued jobs peaks at ~81 MiB with Go's
// default, ~106 MiB with this) while collection is about a fifth of the
// control plane's CPU under load; this cuts dure dev's CPU per job by an
// eighth (docs/benchmarks.md).
// The heap stays proportional to the live state: nothing here is unbounded.
const longRunningGCPercent = 200

// tuneGC applies longRunningGCPercent unless the user set GOGC.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(longRunningGCPercent)
	}
}
