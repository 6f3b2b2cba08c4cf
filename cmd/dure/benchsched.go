package main

import (
	"encoding/json"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/sim"
)

type benchSchedFlags struct {
	spec   sim.BenchSpec
	passes int
	policy string
	output string
}

func benchSchedCommand() *cobra.Command {
	f := benchSchedFlags{
		spec:   sim.BenchSpec{Nodes: 10000, Jobs: 100000, Queues: 50, Racks: 50, Seed: 1},
		passes: 5, policy: string(sched.PolicyDure), output: "table",
	}
	c := &cobra.Command{
		Use:   "sched",
		Short: "Time whole scheduling passes on a generated cluster and queue, in process",
		Long: "dure bench sched generates a cluster (mixed GPU/CPU nodes in racks) and a queue of\n" +
			"pending jobs across queues with a seeded random source (the distributions are in\n" +
			"docs/simulate.md), then runs whole scheduling passes of the real scheduler: the\n" +
			"first on the empty cluster, each later one after a tenth of the running jobs\n" +
			"ended. It reports placements per second over whole passes and pass latency.\n" +
			"Nothing is started; no server is needed.",
		Example: "  dure bench sched --nodes 10000 --jobs 100000\n  dure bench sched --nodes 1000 --jobs 10000 --policy easy -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchSched(cmd.OutOrStdout(), f)
		},
	}
	fl := c.Flags()
	fl.IntVar(&f.spec.Nodes, "nodes", f.spec.Nodes, "nodes in the generated cluster")
	fl.IntVar(&f.spec.Jobs, "jobs", f.spec.Jobs, "pending jobs")
	fl.IntVar(&f.spec.Queues, "queues", f.spec.Queues, "leaf queues (in cohorts of 5)")
	fl.IntVar(&f.spec.Racks, "racks", f.spec.Racks, "racks (values of the rack label)")
	fl.Uint64Var(&f.spec.Seed, "seed", f.spec.Seed, "random seed of the generator")
	fl.IntVar(&f.passes, "passes", f.passes, "scheduling passes to time")
	fl.StringVar(&f.policy, "policy", f.policy, "fifo, easy, conservative or dure")
	fl.StringVarP(&f.output, "output", "o", f.output, "output format: table or json")
	return c
}

// benchSchedJSON is the -o json form.
type benchSchedJSON struct {
	Policy         string  `json:"policy"`
	Nodes          int     `json:"nodes"`
	Jobs           int     `json:"jobs"`
	Queues         int     `json:"queues"`
	Racks          int     `json:"racks"`
	Seed           uint64  `json:"seed"`
	Passes         int     `json:"passes"`
	Placements     int     `json:"placements"`
	FirstPassPlace int     `json:"first_pass_placements"`
	PendingAfter   int     `json:"pending_after"`
	PlacementsPerS float64 `json:"placements_per_s"`
	PassMS         float64 `json:"pass_ms"` // mean
	PassMSP50      float64 `json:"pass_ms_p50"`
	PassMSP99      float64 `json:"pass_ms_p99"`
	FirstPassMS    float64 `json:"first_pass_ms"`
	// CPU time of the process during the passes, garbage collection on
	// every thread included: the one-core figures.
	PlacementsPerCPUS float64 `json:"placements_per_cpu_s"`
	PassCPUMS         float64 `json:"pass_cpu_ms"` // mean
	GenerateMS        float64 `json:"generate_ms"`
}

// processCPU is the user+system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runBenchSched(w io.Writer, f benchSchedFlags) error {
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("--output: must be table or json (got %q)", f.output)
	}
	p, err := sched.ParsePolicy(f.policy)
	if err != nil {
		return policyFlagError(err)
	}
	if f.passes < 1 {
		return fmt.Errorf("--passes: must be at least 1 (got %d)", f.passes)
	}
	t0 := time.Now()
	wl, err := sim.GenerateBench(f.spec)
	if err != nil {
		return err
	}
	gen := time.Since(t0)
	res, err := sim.RunBench(wl, sched.Config{Policy: p}, f.passes, f.spec.Seed, time.Now, processCPU)
	if err != nil {
		return err
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	out := benchSchedJSON{
		Policy: string(p), Nodes: f.spec.Nodes, Jobs: f.spec.Jobs, Queues: f.spec.Queues, Racks: f.spec.Racks, Seed: f.spec.Seed,
		Passes: res.Passes, Placements: res.Placements, FirstPassPlace: res.PlacedFirst, PendingAfter: res.Pending,
		PlacementsPerS: res.PlacementsPerSecond(), PassMS: ms(res.Total) / float64(res.Passes),
		PassMSP50: ms(res.Percentile(50)), PassMSP99: ms(res.Percentile(99)), FirstPassMS: ms(res.PassTimes[0]),
		PlacementsPerCPUS: res.PlacementsPerCPUSecond(), PassCPUMS: ms(res.CPUTotal()) / float64(res.Passes),
		GenerateMS: ms(gen),
	}
	if f.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(w, "cluster      %d nodes in %d racks; %d jobs pending in %d queues (seed %d, generated in %.0f ms)\n",
		out.Nodes, out.Racks, out.Jobs, out.Queues, out.Seed, out.GenerateMS)
	fmt.Fprintf(w, "policy       %s, %d passes (first on the empty cluster, then after 10%% of running jobs end)\n", out.Policy, out.Passes)
	fmt.Fprintf(w, "placements   %d (%d in the first pass; %d jobs still pending)\n", out.Placements, out.FirstPassPlace, out.PendingAfter)
	fmt.Fprintf(w, "throughput   %.0f placements/s over whole passes\n", out.PlacementsPerS)
	fmt.Fprintf(w, "pass time    mean %.1f ms, p50 %.1f ms, p99 %.1f ms, first %.1f ms\n", out.PassMS, out.PassMSP50, out.PassMSP99, out.FirstPassMS)
	fmt.Fprintf(w, "cpu time     mean %.1f ms per pass, %.0f placements per CPU second (garbage collection included)\n", out.PassCPUMS, out.PlacementsPerCPUS)
	return nil
}
