package agent

import (
	"fmt"
	"testing"
)

// BenchmarkAllocationToRunning measures the agent's part of submit→start,
// one allocation at a time: from the servers listing a new allocation to the
// agent's "running" report reaching them (watch answer, supervisor and task
// start, report).
func BenchmarkAllocationToRunning(b *testing.B) {
	cp := newControlPlane(b)
	startAgent(b, testConfig(b, cp.URL()))
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("1.%d.0", i)
		cp.add(shellAlloc(id, "exit 0"))
		// The task may end before the watch sees "running": any status at
		// or past running means the agent has reported the start.
		cp.waitFor("allocation "+id+" to start", func(cp *controlPlane) bool {
			st := cp.allocs[id].Status
			return st == "running" || st == "exited" || st == "failed"
		})
	}
}
