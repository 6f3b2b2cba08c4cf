package sched_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/durehq/dure/internal/sched"
	sim "github.com/durehq/dure/internal/sched/zzsim"
)

// Scratch: compare policies on SWF traces (deleted before handing in).
func TestZZSWF(t *testing.T) {
	path := os.Getenv("SWF")
	if path == "" {
		t.Skip("SWF not set")
	}
	pols := []sched.Policy{sched.PolicyEASY, sched.PolicyDure}
	if os.Getenv("POL") != "" {
		pols = []sched.Policy{sched.Policy(os.Getenv("POL"))}
	}
	for _, pol := range pols {
		tr, err := sim.OpenTrace(path, sim.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		cfg := sched.Config{Policy: pol}
		if d := os.Getenv("DEPTH"); d != "" {
			fmt.Sscan(d, &cfg.ReservationDepth)
		}
		cfg.NoPredictions = os.Getenv("NOPRED") != ""
		res, err := sim.Run(tr, sim.Options{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		m := res.Metrics
		fmt.Printf("preemptions=%d never=%d results=%d passes=%d\n", res.Preemptions, len(res.NeverStarted), len(res.Jobs), res.Passes)
		fmt.Printf("%s %s: jobs=%d util=%.3f wait=%.1fmin bsld=%.1f p95=%v (%v)\n", path, pol, m.Jobs, m.Utilization, m.MeanWait.Minutes(), m.MeanBSLD, m.P95Wait, time.Since(start).Round(time.Millisecond))
	}
}
