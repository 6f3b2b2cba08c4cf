package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
	"github.com/durehq/dure/internal/sim"
)

// addSimulationCommands attaches `dure simulate` to root and `sched` to the
// existing `dure bench` command (created if absent).
func addSimulationCommands(root *cobra.Command) {
	root.AddCommand(simulateCommand())
	var bench *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == "bench" {
			bench = c
		}
	}
	if bench == nil {
		bench = &cobra.Command{Use: "bench", Short: "Measure dure"}
		root.AddCommand(bench)
	}
	bench.AddCommand(benchSchedCommand())
}

// defaultPhillyNodes is the machine for traces that name none (Philly): 512
// GPUs, where the trace's 374 GPUs busy on average are a load of about 0.73.
const defaultPhillyNodes = "64x(8gpu)"

type simulateFlags struct {
	trace, nodes, nodeList, queues, output, plot string
	policies                                     []string
	compare, runPast, noPreempt, noPredict       bool
	limit                                        int
	loadScale                                    float64
	defaultWalltime, grace                       time.Duration
}

func simulateCommand() *cobra.Command {
	f := simulateFlags{output: "table", loadScale: 1}
	c := &cobra.Command{
		Use:   "simulate --trace FILE",
		Short: "Replay a workload trace through the real scheduler on a virtual cluster",
		Long: "dure simulate replays a job trace (SWF logs of the Parallel Workloads Archive,\n" +
			"the Philly GPU job summary, or Alibaba's openb pod list) through dure's scheduler\n" +
			"with a virtual clock and virtual nodes, and reports utilization, waits and\n" +
			"bounded slowdown (τ = 10 s) over all jobs but the first 1% to terminate.\n" +
			"The scheduler sees only what a real one knows: requested times, never actual\n" +
			"runtimes. A job that ran past its walltime in the log is stopped at it.\n\n" +
			"--nodes describes the cluster: COUNTxNODE terms joined by +, a node being an\n" +
			"item or a parenthesised list of items: Ncpu, a memory size (512G), Ngpu[:MODEL],\n" +
			"key=value labels. Default: the trace's own machine (SWF MaxProcs as one node;\n" +
			"openb's node list beside the trace), or " + defaultPhillyNodes + " for Philly.\n\n" +
			"See docs/simulate.md for the conversion rules and published numbers.",
		Example: "  dure simulate --trace KTH-SP2-1996-2.1-cln.swf.gz --policy easy\n" +
			"  dure simulate --trace lublin_256.swf --compare --plot plots/\n" +
			"  dure simulate --trace philly.csv --nodes '64x(32cpu,256G,8gpu:V100)' -o json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSimulate(cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.trace, "trace", "", "trace file: SWF (plain or .gz), philly.csv or openb_pod_list_*.csv (required)")
	fl.StringSliceVar(&f.policies, "policy", []string{string(sched.PolicyDure)}, "policy to simulate: fifo, easy, conservative or dure; repeat or comma-separate to compare")
	fl.BoolVar(&f.compare, "compare", false, "simulate every policy on the trace (overrides --policy)")
	fl.StringVar(&f.nodes, "nodes", "", "cluster spec, e.g. 100x1cpu or 64x(8cpu,512G,8gpu:H100)+32x(64cpu,256G)")
	fl.StringVar(&f.nodeList, "node-list", "", "openb node list CSV giving the cluster (default: openb_node_list_all_node.csv beside an openb trace)")
	fl.StringVar(&f.queues, "queues", "", "queue file, as for dure server --queues and dure queue apply (see docs/simulate.md)")
	fl.StringVarP(&f.output, "output", "o", f.output, "output format: table or json")
	fl.StringVar(&f.plot, "plot", "", "write SVG charts (utilization over time, wait CDF) into this directory")
	fl.IntVar(&f.limit, "limit", 0, "simulate only the first N jobs of the trace")
	fl.Float64Var(&f.loadScale, "load-scale", f.loadScale, "divide submission times by this factor (2 = twice the offered load)")
	fl.BoolVar(&f.runPast, "run-past-walltime", false, "let jobs run their full logged time even past their walltime (default: stopped at it)")
	fl.DurationVar(&f.defaultWalltime, "default-walltime", 0, "walltime the scheduler assumes for jobs that give none (default: the scheduler's, 1h)")
	fl.DurationVar(&f.grace, "preemption-grace", 0, "how long a preempted job keeps its resources before it stops")
	fl.BoolVar(&f.noPreempt, "no-preemption", false, "turn preemption off (dure policy)")
	fl.BoolVar(&f.noPredict, "no-predictions", false, "plan with requested walltimes, not predicted runtimes (dure policy)")
	return c
}

func runSimulate(stdout, stderr io.Writer, f simulateFlags) error {
	if f.trace == "" {
		return errors.New("--trace: required (an SWF, philly.csv or openb pod list file)")
	}
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("--output: must be table or json (got %q)", f.output)
	}
	if f.limit < 0 {
		return fmt.Errorf("--limit: must be 0 (the whole trace) or more (got %d)", f.limit)
	}
	policies, err := parsePolicies(f.policies, f.compare)
	if err != nil {
		return err
	}
	var nodes []*model.Node
	if f.nodes != "" {
		if f.nodeList != "" {
			return errors.New("--nodes and --node-list: give one cluster, not both")
		}
		if nodes, err = sim.ParseNodes(f.nodes); err != nil {
			return fmt.Errorf("--nodes %q: %w", f.nodes, err)
		}
	}
	gpn := 0
	for _, n := range nodes {
		gpn = max(gpn, int(n.Capacity.GPUs))
	}
	tr, err := sim.OpenTrace(f.trace, sim.OpenOptions{GPUsPerNode: gpn, NodeList: f.nodeList})
	if err != nil {
		return err
	}
	if f.nodeList != "" && tr.Format != sim.FormatOpenB {
		nf, err := os.Open(f.nodeList)
		if err != nil {
			return fmt.Errorf("--node-list: %w", err)
		}
		nodes, err = sim.ReadOpenBNodes(nf, f.nodeList)
		nf.Close()
		if err != nil {
			return fmt.Errorf("--node-list: %w", err)
		}
	}
	if nodes == nil && tr.Nodes == nil {
		if nodes, err = sim.ParseNodes(defaultPhillyNodes); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "dure: %s names no machine; simulating %s (set --nodes)\n", tr.Name, defaultPhillyNodes)
	}
	tr.Head(f.limit)
	if f.loadScale != 1 {
		if err := tr.ScaleLoad(f.loadScale); err != nil {
			return fmt.Errorf("--load-scale: %w", err)
		}
	}
	var queues []*model.Queue
	if f.queues != "" {
		data, err := os.ReadFile(f.queues)
		if err != nil {
			return fmt.Errorf("--queues: %w", err)
		}
		if queues, err = sim.ReadQueues(data); err != nil {
			return fmt.Errorf("--queues %s: %w", f.queues, err)
		}
		if warn := unmatchedQueues(tr, queues); warn != "" {
			fmt.Fprintf(stderr, "dure: --queues %s: %s\n", f.queues, warn)
		}
	}
	runs := make([]*simRun, len(policies))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2) // this is a 2-core machine; the scheduler is single-threaded
	for i, p := range policies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			opt := sim.Options{
				Config: sched.Config{
					Policy: p, DefaultWalltime: f.defaultWalltime,
					NoPreemption: f.noPreempt, NoPredictions: f.noPredict,
					PreemptGrace: f.grace, // what the scheduler expects a stop to take (0: its default)
				},
				Nodes: nodes, Queues: queues, RunPastWalltime: f.runPast,
				PreemptionGrace: f.grace, Clock: time.Now,
			}
			t0 := time.Now()
			res, err := sim.Run(tr, opt)
			runs[i] = &simRun{res: res, err: err, wall: time.Since(t0)}
		}()
	}
	wg.Wait()
	var results []*sim.Result
	for i, r := range runs {
		if r.err != nil {
			return fmt.Errorf("policy %s: %w", policies[i], r.err)
		}
		results = append(results, r.res)
		if n := len(r.res.NeverStarted); n > 0 {
			fmt.Fprintf(stderr, "dure: policy %s left %d jobs never started (first: %d) on a cluster with nothing else to do\n", policies[i], n, r.res.NeverStarted[0])
		}
	}
	if f.plot != "" {
		files, err := sim.WriteSVGs(f.plot, results)
		if err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
		if f.output == "table" {
			defer fmt.Fprintf(stdout, "plots       %s\n", strings.Join(files, ", "))
		}
	}
	if f.output == "json" {
		out := make([]simJSON, len(runs))
		for i, r := range runs {
			out[i] = toJSON(tr, r)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if len(out) == 1 {
			return enc.Encode(out[0])
		}
		return enc.Encode(struct {
			Trace string    `json:"trace"`
			Runs  []simJSON `json:"runs"`
		}{tr.Name, out})
	}
	printSimulation(stdout, tr, runs)
	return nil
}

// unmatchedQueues warns when no queue of the file is one a job of the trace
// is in: the file then changes nothing but the tree's shape, and the likely
// cause is queues named for a cluster rather than after the trace's.
func unmatchedQueues(tr *sim.Trace, queues []*model.Queue) string {
	inTrace := map[string]bool{}
	for i := range tr.Jobs {
		inTrace[tr.Jobs[i].Request.Queue] = true
	}
	for _, q := range queues {
		if inTrace[q.Name] {
			return ""
		}
	}
	names := make([]string, 0, len(inTrace))
	for n := range inTrace {
		names = append(names, n)
	}
	sort.Strings(names)
	more := ""
	if len(names) > 5 {
		names, more = names[:5], fmt.Sprintf(", … (%d in all)", len(inTrace))
	}
	return fmt.Sprintf("no queue of the file holds a job of the trace, whose queues are %s%s: name the file's queues after them (see docs/simulate.md)", strings.Join(names, ", "), more)
}

// policyFlagError names the --policy flag once: sched's error starts with
// "policy: " itself.
func policyFlagError(err error) error {
	var pe *sched.PolicyError
	if errors.As(err, &pe) {
		return fmt.Errorf("--policy: unknown policy %q (want fifo, easy, conservative or dure)", pe.Name)
	}
	return fmt.Errorf("--policy: %w", err)
}

func parsePolicies(list []string, compare bool) ([]sched.Policy, error) {
	if compare {
		return []sched.Policy{sched.PolicyFIFO, sched.PolicyEASY, sched.PolicyConservative, sched.PolicyDure}, nil
	}
	var out []sched.Policy
	seen := map[sched.Policy]bool{}
	for _, s := range list {
		for _, name := range strings.Split(s, ",") {
			p, err := sched.ParsePolicy(strings.TrimSpace(name))
			if err != nil {
				return nil, policyFlagError(err)
			}
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--policy: name at least one of fifo, easy, conservative, dure")
	}
	return out, nil
}

type simRun struct {
	res  *sim.Result
	err  error
	wall time.Duration
}

// simJSON is the -o json form of one simulation.
type simJSON struct {
	Trace        string             `json:"trace"`
	Format       string             `json:"format"`
	Policy       string             `json:"policy"`
	Nodes        int                `json:"nodes"`
	Capacity     map[string]float64 `json:"capacity"`
	Jobs         int                `json:"jobs"` // measured: all but the first 1% to terminate
	Completed    int                `json:"completed"`
	Resource     string             `json:"resource"`
	Utilization  float64            `json:"utilization"`
	MeanWaitS    float64            `json:"mean_wait_s"`
	MedianWaitS  float64            `json:"median_wait_s"`
	P95WaitS     float64            `json:"p95_wait_s"`
	MeanBSLD     float64            `json:"mean_bsld"`
	MakespanS    float64            `json:"makespan_s"`
	Preemptions  int                `json:"preemptions"`
	LostWork     float64            `json:"lost_work"` // primary resource·s of preempted attempts
	Killed       int                `json:"killed_at_walltime"`
	Dropped      map[string]int     `json:"dropped"`
	NeverStarted int                `json:"never_started"`
	Queues       []queueJSON        `json:"queues,omitempty"`
	ContentionS  float64            `json:"contention_s"` // time some job waited: what queue shares are measured over
	Passes       int                `json:"passes"`
	SimS         float64            `json:"sim_s"`
	SchedS       float64            `json:"sched_s"`
}

type queueJSON struct {
	Queue     string  `json:"queue"`
	Jobs      int     `json:"jobs"`
	Share     float64 `json:"share"`
	FairShare float64 `json:"fair_share"`
	Demand    float64 `json:"demand"`
	MeanWaitS float64 `json:"mean_wait_s"`
	MeanBSLD  float64 `json:"mean_bsld"`
}

func toJSON(tr *sim.Trace, r *simRun) simJSON {
	res, m := r.res, r.res.Metrics
	killed := 0
	for i := range res.Jobs {
		if res.Jobs[i].Killed {
			killed++
		}
	}
	out := simJSON{
		Trace: tr.Name, Format: tr.Format, Policy: string(res.Policy), Nodes: res.Nodes,
		Capacity: map[string]float64{
			"cpu": float64(res.Capacity.MilliCPU) / 1000, "memory_bytes": float64(res.Capacity.MemoryBytes), "gpu": float64(res.Capacity.GPUs),
		},
		Jobs: m.Jobs, Completed: len(res.Jobs), Resource: m.Resource, Utilization: m.Utilization,
		MeanWaitS: m.MeanWait.Seconds(), MedianWaitS: m.MedianWait.Seconds(), P95WaitS: m.P95Wait.Seconds(),
		MeanBSLD: m.MeanBSLD, MakespanS: m.Makespan.Seconds(), Preemptions: res.Preemptions, LostWork: res.LostWork,
		Killed: killed, Dropped: res.Dropped, NeverStarted: len(res.NeverStarted),
		Passes: res.Passes, SimS: r.wall.Seconds(), SchedS: res.SchedTime.Seconds(), ContentionS: res.Contention.Seconds(),
	}
	for _, q := range res.Queues {
		out.Queues = append(out.Queues, queueJSON{
			Queue: q.Queue, Jobs: q.Jobs, Share: q.Share, FairShare: q.FairShare, Demand: q.Demand,
			MeanWaitS: q.MeanWait.Seconds(), MeanBSLD: q.MeanBSLD,
		})
	}
	return out
}

func printSimulation(w io.Writer, tr *sim.Trace, runs []*simRun) {
	first := runs[0].res
	fmt.Fprintf(w, "trace       %s (%s, %d jobs%s)\n", tr.Name, tr.Format, len(tr.Jobs), droppedText(first.Dropped))
	for _, n := range tr.Notes {
		fmt.Fprintf(w, "            %s\n", n)
	}
	fmt.Fprintf(w, "cluster     %s\n", first.Cluster)
	fmt.Fprintf(w, "measured    %d of %d completed jobs (the first %d%% to terminate left out); utilization in %s\n",
		first.Metrics.Jobs, len(first.Jobs), int(sim.WarmupFraction*100), first.Metrics.Resource)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tUTIL\tMEAN WAIT\tMEDIAN WAIT\tP95 WAIT\tMEAN BSLD\tMAKESPAN\tPREEMPTIONS\tSIM TIME")
	for _, r := range runs {
		m := r.res.Metrics
		fmt.Fprintf(tw, "%s\t%.1f%%\t%s\t%s\t%s\t%.2f\t%s\t%d\t%.1fs (%d passes)\n",
			r.res.Policy, 100*m.Utilization, sim.FormatDuration(m.MeanWait), sim.FormatDuration(m.MedianWait),
			sim.FormatDuration(m.P95Wait), m.MeanBSLD, sim.FormatDuration(m.Makespan), r.res.Preemptions,
			r.wall.Seconds(), r.res.Passes)
	}
	tw.Flush()
	for _, r := range runs {
		if len(r.res.Queues) == 0 {
			continue
		}
		if r.res.Contention > 0 {
			fmt.Fprintf(w, "\nqueues under %s (share: of the %s·time delivered while jobs waited, %s in all)\n",
				r.res.Policy, r.res.Primary, sim.FormatDuration(r.res.Contention))
		} else {
			fmt.Fprintf(w, "\nqueues under %s (no job ever waited, so no shares under contention)\n", r.res.Policy)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "QUEUE\tJOBS\tSHARE\tFAIR SHARE\tDEMAND\tMEAN WAIT\tMEAN BSLD")
		for _, q := range r.res.Queues {
			share := "-"
			if r.res.Contention > 0 {
				share = fmt.Sprintf("%.1f%%", 100*q.Share)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f%%\t%.1f%%\t%s\t%.2f\n", q.Queue, q.Jobs, share, 100*q.FairShare,
				100*q.Demand, sim.FormatDuration(q.MeanWait), q.MeanBSLD)
		}
		tw.Flush()
	}
}

func droppedText(d map[string]int) string {
	if len(d) == 0 {
		return ""
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", d[k], k)
	}
	return "; left out: " + strings.Join(parts, ", ")
}
