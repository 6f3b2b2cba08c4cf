package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/spec"
)

func (a *app) benchCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure dure: a running cluster (dispatch) or the scheduler alone (sched)",
	}
	c.AddCommand(a.benchDispatchCommand())
	return c
}

// benchOptions configure dure bench dispatch.
type benchOptions struct {
	jobs        int
	concurrency int
	batch       int
	cmd         string
	cpus        string
	queue       string
	idle        bool
	rate        float64 // jobs per second offered; 0: as fast as the submitters can
	timeout     time.Duration
}

// benchResult is what dure bench dispatch reports (its -o json form).
type benchResult struct {
	Mode        string    `json:"mode"` // throughput or idle
	Jobs        int       `json:"jobs"`
	Concurrency int       `json:"concurrency"`
	Batch       int       `json:"batch"`          // jobs per submit request (1: POST /v1/jobs; more: POST /v1/jobs:batch)
	Rate        float64   `json:"rate,omitempty"` // jobs per second offered (--rate); absent: as fast as possible
	SubmitPerS  float64   `json:"submit_per_s"`
	E2EJobsPerS float64   `json:"e2e_jobs_per_s"`
	SubmitS     float64   `json:"submit_s"` // first submit to last submit answered
	E2ES        float64   `json:"e2e_s"`    // first submit to last job seen final
	LatencyMS   latencyMS `json:"latency_ms"`
	Failed      int       `json:"failed"`
	// Pruned jobs finished, but the server had dropped them (its
	// --max-finished-jobs or --job-retention) before the bench read them:
	// a run longer than the server keeps. Their outcome and start latency
	// are unknown; they count as finished, not failed.
	Pruned int `json:"pruned,omitempty"`
}

// latencyMS summarises submit→process-start latency in milliseconds.
type latencyMS struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func (a *app) benchDispatchCommand() *cobra.Command {
	o := benchOptions{jobs: 100, concurrency: 8, batch: 1, cmd: "true", cpus: "100m", timeout: 10 * time.Minute}
	c := &cobra.Command{
		Use:   "dispatch",
		Short: "Submit many trivial jobs and report throughput and start latency",
		Long: "Submit --jobs trivial jobs through the API as fast as --concurrency submitters\n" +
			"can, wait for all to finish, and report submit throughput, end-to-end\n" +
			"throughput (jobs / time from the first submit until the last job was seen\n" +
			"finished) and submit→process-start latency (allocation start minus job\n" +
			"submit time, both server-side clocks). With --idle, submit one job at a time\n" +
			"and wait for it to start before the next: the idle-cluster latency. With\n" +
			"--batch N each request submits N jobs at once (POST /v1/jobs:batch). With\n" +
			"--rate R the jobs are offered at R per second (open loop) instead of all at\n" +
			"once: the cluster sustains R if end-to-end throughput keeps up with it and\n" +
			"the start latency stays flat.",
		Example: "  dure bench dispatch --jobs 1000 --concurrency 16\n  dure bench dispatch --jobs 10000 --concurrency 4 --batch 100\n" +
			"  dure bench dispatch --jobs 10000 --concurrency 4 --batch 20 --rate 800\n  dure bench dispatch --jobs 50 --idle -o json",
		Args: args(cobra.NoArgs),
	}
	out := outputFlag(c, false)
	fs := c.Flags()
	fs.IntVar(&o.jobs, "jobs", o.jobs, "number of jobs to submit")
	fs.IntVar(&o.concurrency, "concurrency", o.concurrency, "concurrent submitters")
	fs.IntVar(&o.batch, "batch", o.batch, "jobs per submit request (more than 1: the batch endpoint)")
	fs.StringVar(&o.cmd, "cmd", o.cmd, "command each job runs, split on spaces")
	fs.StringVar(&o.cpus, "cpus", o.cpus, "CPUs per job (small, so many fit at once)")
	fs.StringVar(&o.queue, "queue", "", "queue to submit to")
	fs.BoolVar(&o.idle, "idle", false, "one job at a time: wait for each to start before submitting the next")
	fs.Float64Var(&o.rate, "rate", 0, "offer jobs at this many per second (0: as fast as the submitters can)")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "give up after this long")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if err := checkOutput(*out, false); err != nil {
			return err
		}
		if o.jobs < 1 {
			return fmt.Errorf("--jobs: must be at least 1 (got %d)", o.jobs)
		}
		if o.concurrency < 1 {
			return fmt.Errorf("--concurrency: must be at least 1 (got %d)", o.concurrency)
		}
		if o.batch < 1 || o.batch > maxBenchBatch {
			return fmt.Errorf("--batch: must be 1 to %d (got %d)", maxBenchBatch, o.batch)
		}
		if o.rate < 0 || math.IsNaN(o.rate) || math.IsInf(o.rate, 0) {
			return fmt.Errorf("--rate: must be a number of jobs per second, 0 or more (got %v)", o.rate)
		}
		if o.idle && o.rate > 0 {
			return fmt.Errorf("--rate: --idle submits each job when the one before has started (got --rate %v)", o.rate)
		}
		if o.idle && o.batch > 1 {
			return fmt.Errorf("--batch: --idle submits one job at a time (got --batch %d)", o.batch)
		}
		argv := strings.Fields(o.cmd)
		if len(argv) == 0 {
			return fmt.Errorf("--cmd: must name a command (got %q)", o.cmd)
		}
		milli, err := spec.ParseCPU(o.cpus)
		if err != nil {
			return fmt.Errorf("--cpus: %w", err)
		}
		js, err := a.finishSpec(api.JobSpec{
			Name:   "bench",
			Queue:  o.queue,
			Groups: []api.TaskGroupSpec{{Count: 1, Command: argv, Resources: api.Resources{MilliCPU: milli}}},
		})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Context(), o.timeout)
		defer cancel()
		res, err := a.benchDispatch(ctx, js, o)
		if err != nil {
			return err
		}
		if *out == outJSON {
			if err := writeJSON(a.stdout, res); err != nil {
				return err
			}
		} else {
			renderBench(a.stdout, res)
		}
		if res.Failed > 0 {
			return &ExitError{Code: 1}
		}
		return nil
	}
	return c
}

// maxBenchBatch is the most jobs the batch endpoint takes in one request.
const maxBenchBatch = 1000

// benchWaiters is how many goroutines wait for the submitted jobs to finish.
const benchWaiters = 2

// benchDispatch runs the benchmark. Errors of single jobs count as failures;
// only a timeout or no job at all getting through is an error.
func (a *app) benchDispatch(ctx context.Context, js api.JobSpec, o benchOptions) (benchResult, error) {
	cl := a.client()
	res := benchResult{Mode: "throughput", Jobs: o.jobs, Concurrency: o.concurrency, Batch: o.batch, Rate: o.rate}
	if o.idle {
		res.Mode, res.Concurrency = "idle", 1
	}
	ids := make([]uint64, o.jobs) // 0: submit failed
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		failed.Add(1)
		errOnce.Do(func() { firstErr = err })
	}

	start := time.Now()
	if o.idle {
		for i := range ids {
			id, err := cl.SubmitJob(ctx, js)
			if err != nil {
				fail(err)
				if ctx.Err() != nil {
					return res, fmt.Errorf("bench: gave up after %s: %w", o.timeout, err)
				}
				continue
			}
			ids[i] = id
			if err := waitStarted(ctx, cl, id); err != nil {
				return res, fmt.Errorf("bench: job %d did not start: %w", id, err)
			}
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		batch := make([]api.JobSpec, o.batch)
		for i := range batch {
			batch[i] = js
		}
		for range o.concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				step := int64(o.batch)
				for i := int(next.Add(step) - step); i < len(ids); i = int(next.Add(step) - step) {
					n := min(o.batch, len(ids)-i)
					if o.rate > 0 {
						// Open loop: the request holding jobs i to i+n-1
						// goes when the last of them is due, whatever the
						// cluster does meanwhile.
						due := start.Add(time.Duration(float64(i+n-1) / o.rate * float64(time.Second)))
						if d := time.Until(due); d > 0 {
							select {
							case <-ctx.Done():
								for range n {
									fail(ctx.Err())
								}
								continue
							case <-time.After(d):
							}
						}
					}
					if n == 1 && o.batch == 1 {
						id, err := cl.SubmitJob(ctx, js)
						if err != nil {
							fail(err)
							continue
						}
						ids[i] = id
						continue
					}
					got, err := cl.SubmitJobs(ctx, batch[:n])
					if err != nil {
						for range n {
							fail(err)
						}
						continue
					}
					copy(ids[i:], got)
				}
			}()
		}
		wg.Wait()
	}
	submitDur := time.Since(start)

	// The measured wait ends when none of the jobs is pending or running,
	// which a cheap poll of the user's newest active job tells (the server
	// reads it from its state index): waiting must not load the cluster
	// being measured. Each job is read once afterwards, for its outcome and
	// start latency. If the user has other active jobs, the poll cannot
	// tell, and the jobs are waited for one by one instead.
	mine := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		if id != 0 {
			mine[id] = true
		}
	}
	byOne, err := waitNoneActive(ctx, cl, js.Owner, mine, start)
	if err != nil {
		return res, fmt.Errorf("bench: waiting for jobs to finish: %w", err)
	}
	if byOne {
		if err := waitEach(ctx, cl, ids); err != nil {
			return res, fmt.Errorf("bench: waiting for jobs to finish: %w", err)
		}
	}
	e2eDur := time.Since(start)
	latencies := make([]time.Duration, 0, len(ids))
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	var waitErr error
	var pruned int
	for range min(o.concurrency, benchWaiters) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(ids); i = int(next.Add(1) - 1) {
				if ids[i] == 0 {
					continue
				}
				j, err := waitFinal(ctx, cl, ids[i])
				mu.Lock()
				switch {
				case api.IsNotFound(err):
					// Only finished jobs are pruned, and none was
					// active a moment ago.
					pruned++
				case err != nil:
					if waitErr == nil {
						waitErr = fmt.Errorf("job %d: %w", ids[i], err)
					}
				case j.State != "succeeded":
					fail(fmt.Errorf("job %d %s", j.ID, strings.TrimPrefix(outcome(&j), fmt.Sprint(j.ID)+" ")))
				}
				if l, ok := startLatency(&j); ok {
					latencies = append(latencies, l)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if waitErr != nil {
		return res, fmt.Errorf("bench: waiting for jobs to finish: %w", waitErr)
	}

	res.Failed = int(failed.Load())
	if firstErr != nil {
		fmt.Fprintf(a.stderr, "dure: bench: %d of %d jobs failed; first: %s\n", res.Failed, o.jobs, describeError(firstErr))
	}
	if res.Pruned = pruned; pruned > 0 {
		fmt.Fprintf(a.stderr, "dure: bench: %d jobs finished but the server pruned them (its --max-finished-jobs or --job-retention) before they were read: "+
			"they count as finished, without their outcome or start latency\n", pruned)
	}
	res.SubmitS = round(submitDur.Seconds())
	res.E2ES = round(e2eDur.Seconds())
	ok := o.jobs - res.Failed
	res.SubmitPerS = round(float64(o.jobs-countZero(ids)) / submitDur.Seconds())
	res.E2EJobsPerS = round(float64(ok) / e2eDur.Seconds())
	res.LatencyMS = summarize(latencies)
	return res, nil
}

// benchPoll is how often the bench looks whether its jobs are done, after
// running for elapsed: a five-hundredth of the time so far (between 5 and
// 50 ms), so the end is seen to within 0.2% of the run while the looks, each
// a request the measured server answers, stay few.
func benchPoll(elapsed time.Duration) time.Duration {
	return min(max(elapsed/500, 5*time.Millisecond), 50*time.Millisecond)
}

// waitNoneActive polls until none of the owner's jobs is pending or
// running. byOne is true when an active job of the owner is not one of
// mine: then the poll cannot tell and the caller waits job by job.
func waitNoneActive(ctx context.Context, cl *api.Client, owner string, mine map[uint64]bool, start time.Time) (byOne bool, err error) {
	for {
		active, _, err := cl.ListJobs(ctx, api.JobFilter{State: "active", Owner: owner, Limit: 1}, api.WatchOptions{})
		if err != nil {
			return false, err
		}
		if len(active) == 0 {
			return false, nil
		}
		if !mine[active[0].ID] {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(benchPoll(time.Since(start))):
		}
	}
}

// waitEach waits for the jobs one by one, in submission order (most are
// final by the time they are asked about).
func waitEach(ctx context.Context, cl *api.Client, ids []uint64) error {
	for _, id := range ids {
		if id == 0 {
			continue
		}
		if _, err := waitFinal(ctx, cl, id); err != nil {
			return fmt.Errorf("job %d: %w", id, err)
		}
	}
	return nil
}

func countZero(ids []uint64) int {
	n := 0
	for _, id := range ids {
		if id == 0 {
			n++
		}
	}
	return n
}

// waitStarted blocks until a task of the job has started (or the job is
// final, e.g. it failed to start).
func waitStarted(ctx context.Context, cl *api.Client, id uint64) error {
	var idx uint64
	for {
		j, newIdx, err := getJob(ctx, cl, id, api.WatchOptions{Index: idx, Wait: watchWait})
		if err != nil {
			return err
		}
		if _, ok := startLatency(&j); ok || j.Terminal() {
			return nil
		}
		idx = newIdx
	}
}

// startLatency is the time from submission to the first task process start.
func startLatency(j *api.Job) (time.Duration, bool) {
	var first time.Time
	for _, al := range j.Allocations {
		if !al.StartedAt.IsZero() && (first.IsZero() || al.StartedAt.Before(first)) {
			first = al.StartedAt
		}
	}
	if first.IsZero() || j.SubmitTime.IsZero() {
		return 0, false
	}
	return first.Sub(j.SubmitTime), true
}

// summarize computes nearest-rank percentiles in milliseconds.
func summarize(ls []time.Duration) latencyMS {
	if len(ls) == 0 {
		return latencyMS{}
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
	pct := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(ls)))) - 1
		return ms(ls[max(i, 0)])
	}
	return latencyMS{P50: pct(50), P90: pct(90), P99: pct(99), Max: ms(ls[len(ls)-1])}
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }

// round keeps three decimals, plenty for milliseconds and jobs per second.
func round(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	return math.Round(v*1000) / 1000
}

// renderBench prints the human form of a benchmark result.
func renderBench(w io.Writer, r benchResult) {
	t := newTable(w)
	row(t, "mode", r.Mode)
	jobs := fmt.Sprintf("%d (concurrency %d)", r.Jobs, r.Concurrency)
	if r.Batch > 1 {
		jobs = fmt.Sprintf("%d (concurrency %d, %d per request)", r.Jobs, r.Concurrency, r.Batch)
	}
	if r.Rate > 0 {
		jobs = strings.TrimSuffix(jobs, ")") + fmt.Sprintf(", offered at %g/s)", r.Rate)
	}
	row(t, "jobs", jobs)
	row(t, "failed", fmt.Sprint(r.Failed))
	if r.Pruned > 0 {
		row(t, "pruned", fmt.Sprintf("%d (finished; outcome and latency unknown)", r.Pruned))
	}
	row(t, "submit", fmt.Sprintf("%.1f jobs/s (%d in %s)", r.SubmitPerS, r.Jobs, secs(r.SubmitS)))
	row(t, "end-to-end", fmt.Sprintf("%.1f jobs/s (%d in %s)", r.E2EJobsPerS, r.Jobs-r.Failed, secs(r.E2ES)))
	l := r.LatencyMS
	row(t, "submit→start", fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s",
		fmtLatency(msDur(l.P50)), fmtLatency(msDur(l.P90)), fmtLatency(msDur(l.P99)), fmtLatency(msDur(l.Max))))
	t.Flush()
}

func msDur(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

func secs(s float64) string { return fmtLatency(time.Duration(s * float64(time.Second))) }
