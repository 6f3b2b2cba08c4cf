package main

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/durehq/dure/internal/exec"
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

// devProcs is how many Go scheduler slots (GOMAXPROCS) dure dev uses when
// GOMAXPROCS is not set: a quarter of the CPUs, at least one. Its tasks and
// their node daemons run on the same CPUs; with a slot per CPU the Go
// scheduler keeps waking idle threads to look for work (futex wake-ups,
// IPIs, context switches: 42 switches per trivial job measured on two
// cores), which costs more than the parallelism gains. One slot on the
// 2-core VM: 12% less CPU per job at 500 jobs/s, and 840–896 jobs/s kept
// up instead of 692–802 when offered 900 (docs/benchmarks.md). Blocked
// system calls still run in parallel.
func devProcs(cpus int) int { return max(1, cpus/4) }

// tuneDevProcs applies devProcs unless the user set GOMAXPROCS.
func tuneDevProcs() {
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		runtime.GOMAXPROCS(devProcs(runtime.NumCPU()))
	}
}

// relaxTimers gives the server, agent and dev processes 1 ms of timer slack
// (exec.RelaxTimers says why); their own timers are hundreds of
// milliseconds or more.
func relaxTimers(log *slog.Logger) {
	if err := exec.RelaxTimers(); err != nil {
		log.Debug("timer slack left as it was", "err", err)
	}
}
