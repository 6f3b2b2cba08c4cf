package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// defaultJobsLimit is how many jobs `dure jobs` shows unless --limit or --all.
const defaultJobsLimit = 100

func (a *app) jobsCommand() *cobra.Command {
	var f api.JobFilter
	var all bool
	var array string
	c := &cobra.Command{
		Use:   "jobs",
		Short: "List jobs, newest first",
		Long: "List jobs, newest first: by default the newest 100 of every user in every state.\n" +
			"--state takes pending, running, succeeded, failed, cancelled, active\n" +
			"(pending and running) or finished (the other three). A job array shows whole, where it first appears: each\n" +
			"running element on its own row (12_3), the others grouped by state and\n" +
			"reason (12_[4-99%10]). --array ID lists one array's elements one per row;\n" +
			"-o json lists every job (element) the limit lets through, one by one.",
		Example: "  dure jobs\n  dure jobs --state active --user alice\n  dure jobs --array 12\n  dure jobs -o json",
		Args:    args(cobra.NoArgs),
	}
	out := outputFlag(c, true)
	c.Flags().StringVar(&f.State, "state", "", "only jobs in this state: pending, running, succeeded, failed, cancelled, active (pending and running) or finished (the other three)")
	c.Flags().StringVar(&f.Queue, "queue", "", "only jobs in this queue")
	c.Flags().StringVar(&f.Owner, "user", "", "only jobs of this user")
	c.Flags().IntVar(&f.Limit, "limit", defaultJobsLimit, "show at most this many jobs")
	c.Flags().BoolVar(&all, "all", false, "show every job (no --limit)")
	c.Flags().StringVar(&array, "array", "", "only the elements of this job array, one per row, in index order")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if err := checkOutput(*out, true); err != nil {
			return err
		}
		switch f.State {
		case "", "pending", "running", "succeeded", "failed", "cancelled", "active", "finished":
		default:
			return fmt.Errorf("--state: must be one of pending, running, succeeded, failed, cancelled, active, finished (got %q)", f.State)
		}
		if f.Limit < 1 {
			return fmt.Errorf("--limit: must be at least 1 (got %d); use --all for every job", f.Limit)
		}
		if all {
			f.Limit = 0
		}
		if array != "" {
			ref, err := api.ParseJobRef(array)
			if err != nil || ref.Element {
				return fmt.Errorf("--array: want a job array's ID, such as 12 (got %q)", array)
			}
			f.Array = ref.ID
		}
		cl := a.client()
		jobs, _, err := cl.ListJobs(c.Context(), f, api.WatchOptions{})
		if err != nil {
			return err
		}
		if *out != outJSON && f.Array == 0 {
			if jobs, err = completeArrays(c.Context(), cl, jobs, f); err != nil {
				return err
			}
		}
		if *out == outJSON {
			if jobs == nil {
				jobs = []api.Job{}
			}
			return writeJSON(a.stdout, jobs)
		}
		if len(jobs) == 0 {
			fmt.Fprintln(a.stderr, "no jobs")
			return nil
		}
		if f.Array != 0 {
			renderJobList(a.stdout, jobs, a.now(), *out == outWide)
		} else {
			renderJobs(a.stdout, jobs, a.now(), *out == outWide)
		}
		return nil
	}
	return c
}

// renderJobs prints the jobs table, with job arrays compacted (compactRows).
func renderJobs(w io.Writer, jobs []api.Job, now time.Time, wide bool) {
	renderRows(w, compactRows(jobs), now, wide)
}

// renderJobList prints the jobs table with one row per job.
func renderJobList(w io.Writer, jobs []api.Job, now time.Time, wide bool) {
	rows := make([]jobRow, len(jobs))
	for i := range jobs {
		rows[i] = jobRow{ref: jobs[i].Ref(), job: &jobs[i], jobs: 1}
	}
	renderRows(w, rows, now, wide)
}

func renderRows(w io.Writer, rows []jobRow, now time.Time, wide bool) {
	t := newTable(w)
	if wide {
		row(t, "ID", "NAME", "USER", "QUEUE", "STATE", "TASKS", "TIME", "REASON/EXIT", "PRIO", "CPU", "MEM", "GPU", "SUBMITTED", "MESSAGE")
	} else {
		row(t, "ID", "NAME", "USER", "QUEUE", "STATE", "TASKS", "TIME", "REASON/EXIT")
	}
	for _, r := range rows {
		j := r.job
		when := jobTime(j, now)
		if r.jobs > 1 && j.State != "pending" {
			when = "-" // the elements ran for different times
		}
		cells := []string{
			r.ref, orDash(truncate(j.Name, 24)), orDash(j.Owner), orDash(j.Queue),
			j.State, tasksCell(j), when, reasonOrExit(j),
		}
		if wide {
			tot := totalResources(j)
			cells = append(cells, strconv.Itoa(j.Priority), model.FormatMilliCPU(tot.MilliCPU),
				fmtRequest(tot.MemoryBytes), strconv.FormatInt(tot.GPUs, 10),
				ago(now, j.SubmitTime), orDash(truncate(j.Reason.Message, 60)))
		}
		row(t, cells...)
	}
	t.Flush()
}

// jobTime is the TIME column: how long a pending job has waited, how long a
// running job has run, how long a finished job ran ("-" if it never did).
func jobTime(j *api.Job, now time.Time) string {
	switch {
	case j.State == "pending":
		return humanDuration(now.Sub(j.SubmitTime))
	case j.State == "running" && !j.StartTime.IsZero():
		return humanDuration(now.Sub(j.StartTime))
	case j.Terminal() && !j.StartTime.IsZero() && !j.EndTime.IsZero():
		return humanDuration(j.EndTime.Sub(j.StartTime))
	}
	return "-"
}

// reasonOrExit is the REASON/EXIT column: why a job waits, how it ended.
func reasonOrExit(j *api.Job) string {
	switch j.State {
	case "pending":
		return orDash(j.Reason.Code)
	case "running":
		return orDash(j.Reason.Code) // Preempted while it is being stopped
	case "succeeded":
		return "exit 0"
	case "failed":
		if j.ExitCode > 0 { // a negative code is none: the reason says why
			return "exit " + strconv.Itoa(j.ExitCode)
		}
		return orDash(j.Reason.Code)
	case "cancelled":
		return orDash(j.Reason.Code)
	}
	return "-"
}

// tasksCell is the TASKS column: the task count, or "2/4" for a gang that
// runs with part of its tasks.
func tasksCell(j *api.Job) string {
	n := taskCount(j)
	if j.State == "running" && j.StartedTasks > 0 && j.StartedTasks < n {
		return fmt.Sprintf("%d/%d", j.StartedTasks, n)
	}
	return strconv.Itoa(n)
}

// startedTasks is how many tasks the job's latest attempt started with.
func startedTasks(j *api.Job) int {
	if j.StartedTasks > 0 {
		return j.StartedTasks
	}
	return taskCount(j)
}

func taskCount(j *api.Job) int {
	if j.Tasks > 0 {
		return j.Tasks
	}
	n := 0
	for _, g := range j.Groups {
		n += max(g.Count, 1)
	}
	return n
}

func totalResources(j *api.Job) api.Resources {
	var t model.Resources
	for _, g := range j.Groups {
		t = t.Add(toModel(g.Resources).Scale(int64(max(g.Count, 1))))
	}
	return api.Resources{MilliCPU: t.MilliCPU, MemoryBytes: t.MemoryBytes, GPUs: t.GPUs, ScratchBytes: t.ScratchBytes, Custom: t.Custom}
}

func (a *app) jobCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "job ID",
		Short: "Show one job: state, reason, times, resources, allocations, events",
		Long: "Show one job. ID is a job ID or an array element (12_3). The ID of a job\n" +
			"array shows the array: its elements and their states (-o json: the list of\n" +
			"elements).",
		Example: "  dure job 12\n  dure job 12_3\n  dure job 12 -o json",
		Args:    args(cobra.ExactArgs(1)),
	}
	out := outputFlag(c, false)
	c.RunE = func(c *cobra.Command, argv []string) error {
		if err := checkOutput(*out, false); err != nil {
			return err
		}
		ref, err := parseJobRef(argv[0])
		if err != nil {
			return err
		}
		cl := a.client()
		isArray, jp, err := resolveArray(c.Context(), cl, ref)
		if err != nil {
			return err
		}
		if isArray {
			elems, _, err := cl.ListJobs(c.Context(), api.JobFilter{Array: ref.ID, Limit: maxArrayList}, api.WatchOptions{})
			if err != nil {
				return err
			}
			if *out == outJSON {
				return writeJSON(a.stdout, elems)
			}
			if len(elems) == 0 {
				return fmt.Errorf("array %d has no elements left (pruned after their retention)", ref.ID)
			}
			renderArray(a.stdout, ref.ID, elems, a.now())
			return nil
		}
		j := *jp
		if *out == outJSON {
			return writeJSON(a.stdout, j)
		}
		var queueDefault time.Duration
		if j.Walltime == 0 && !j.Terminal() {
			// Say what the scheduler plans with for a job that set no walltime.
			if qs, err := cl.ListQueues(c.Context()); err == nil {
				for _, q := range qs {
					if q.Name == j.Queue {
						queueDefault = time.Duration(q.DefaultWalltime)
					}
				}
			}
		}
		renderJobWith(a.stdout, &j, a.now(), a.loc, queueDefault)
		return nil
	}
	return c
}

// renderJob prints the detail view of one job.
func renderJob(w io.Writer, j *api.Job, now time.Time, loc *time.Location) {
	renderJobWith(w, j, now, loc, 0)
}

// renderJobWith is renderJob for a job whose queue plans jobs without a
// walltime with queueDefault (0: unknown or none).
func renderJobWith(w io.Writer, j *api.Job, now time.Time, loc *time.Location, queueDefault time.Duration) {
	t := newTable(w)
	kv := func(k, v string) { row(t, k+":", v) }
	kv("ID", strconv.FormatUint(j.ID, 10))
	if j.Array != nil {
		throttle := ""
		if j.Array.Throttle > 0 {
			throttle = fmt.Sprintf(", at most %d running at once", j.Array.Throttle)
		}
		kv("Array", fmt.Sprintf("%s: element %d of array %d%s", j.Ref(), j.Array.TaskID, j.Array.JobID, throttle))
	}
	kv("Name", orDash(j.Name))
	kv("Owner", orDash(j.Owner))
	kv("Queue", orDash(j.Queue))
	kv("Priority", strconv.Itoa(j.Priority))
	kv("State", j.State)
	if j.Reason.Code != "" || j.Reason.Message != "" {
		r := j.Reason.Code
		if j.Reason.Message != "" {
			if r != "" {
				r += ": "
			}
			r += j.Reason.Message
		}
		kv("Reason", r)
	}
	if j.Terminal() {
		kv("Exit code", exitCodeText(j.ExitCode))
	}
	tasks := strconv.Itoa(taskCount(j))
	if j.StartedTasks > 0 && j.StartedTasks < taskCount(j) {
		tasks += fmt.Sprintf(" (%d started)", j.StartedTasks)
	}
	kv("Tasks", tasks)
	if gang := gangText(j); gang != "" {
		kv("Placement", gang)
	}
	if len(j.Dependencies) > 0 {
		deps := make([]string, len(j.Dependencies))
		for i, d := range j.Dependencies {
			deps[i] = fmt.Sprintf("%s:%d", d.Type, d.JobID)
			if d.Array {
				deps[i] += " (whole array)"
			}
		}
		kv("Depends on", strings.Join(deps, ", "))
	}
	if j.Walltime > 0 {
		kv("Walltime", humanDuration(time.Duration(j.Walltime)))
	} else if queueDefault > 0 {
		kv("Walltime", fmt.Sprintf("%s (queue %s's default: the job set none)", humanDuration(queueDefault), j.Queue))
	} else {
		kv("Walltime", "none")
	}
	attempt := fmt.Sprintf("%d (retries allowed: %d)", j.Attempt, j.MaxRetries)
	if j.Preemptions > 0 {
		attempt = fmt.Sprintf("%d (retries allowed: %d; preempted %d time(s), which use none)", j.Attempt, j.MaxRetries, j.Preemptions)
	}
	kv("Attempt", attempt)
	kv("Submitted", fmt.Sprintf("%s (%s)", absTime(j.SubmitTime, loc), ago(now, j.SubmitTime)))
	switch {
	case !j.StartTime.IsZero():
		kv("Started", fmt.Sprintf("%s (waited %s)", absTime(j.StartTime, loc), humanDuration(j.StartTime.Sub(j.SubmitTime))))
	case j.State == "pending":
		kv("Started", fmt.Sprintf("- (waiting %s)", humanDuration(now.Sub(j.SubmitTime))))
	default:
		kv("Started", "-")
	}
	switch {
	case !j.EndTime.IsZero() && !j.StartTime.IsZero():
		kv("Ended", fmt.Sprintf("%s (ran %s)", absTime(j.EndTime, loc), humanDuration(j.EndTime.Sub(j.StartTime))))
	case !j.EndTime.IsZero():
		kv("Ended", absTime(j.EndTime, loc))
	case j.State == "running" && !j.StartTime.IsZero():
		kv("Ended", fmt.Sprintf("- (running %s)", humanDuration(now.Sub(j.StartTime))))
	default:
		kv("Ended", "-")
	}
	t.Flush()

	fmt.Fprintln(w, "\nTask groups (resources per task):")
	t = newTable(w)
	row(t, "  GROUP", "TASKS", "CPU", "MEM", "GPU", "CONSTRAINTS", "COMMAND")
	for _, g := range j.Groups {
		row(t, "  "+orDash(g.Name), strconv.Itoa(max(g.Count, 1)), model.FormatMilliCPU(g.Resources.MilliCPU),
			fmtRequest(g.Resources.MemoryBytes), strconv.FormatInt(g.Resources.GPUs, 10),
			fmtLabels(g.Constraints), fmtCommand(g.Command))
	}
	t.Flush()

	fmt.Fprintln(w, "\nAllocations:")
	if len(j.Allocations) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		t = newTable(w)
		row(t, "  ALLOC", "NODE", "STATUS", "EXIT", "GPUS", "STARTED", "MESSAGE")
		for _, al := range j.Allocations {
			row(t, "  "+al.ID, orDash(al.Node), al.Status, allocExit(&al), fmtInts(al.GPUIndices),
				absTime(al.StartedAt, loc), orDash(allocMessage(&al)))
		}
		t.Flush()
	}

	fmt.Fprintln(w, "\nEvents:")
	if len(j.Events) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	t = newTable(w)
	row(t, "  TIME", "TYPE", "MESSAGE")
	for _, e := range j.Events {
		row(t, "  "+absTime(e.Time, loc), e.Type, e.Message)
	}
	t.Flush()
}

// gangText describes the job's gang and placement options, or "".
func gangText(j *api.Job) string {
	var parts []string
	if j.MinTasks > 0 && j.MinTasks < taskCount(j) {
		parts = append(parts, fmt.Sprintf("starts with at least %d of %d tasks", j.MinTasks, taskCount(j)))
	}
	if j.Topology != "" {
		parts = append(parts, fmt.Sprintf("all tasks in one %s", j.Topology))
	}
	if j.Placement != "" {
		parts = append(parts, j.Placement)
	}
	return strings.Join(parts, "; ")
}

// exitCodeText is an exit code, or "none" for the -1 of a task whose end
// was never recorded (its supervisor died) or that never started.
func exitCodeText(code int) string {
	if code < 0 {
		return "none"
	}
	return strconv.Itoa(code)
}

// allocExit renders how a task ended: "0", "137 (OOM)", "none" (lost).
func allocExit(al *api.Allocation) string {
	if al.Status != "exited" {
		return "-"
	}
	s := exitCodeText(al.ExitCode)
	switch {
	case al.OOMKilled:
		s += " (OOM)"
	case al.TimedOut:
		s += " (time limit)"
	case al.Signal != "":
		s += " (" + al.Signal + ")"
	}
	return s
}

func allocMessage(al *api.Allocation) string {
	if al.Message != "" {
		return al.Message
	}
	if al.Desired == "stop" && !isFinalAlloc(al.Status) {
		return "stopping: " + orDash(al.DesiredReason)
	}
	return ""
}

func isFinalAlloc(s string) bool { return s == "exited" || s == "failed" || s == "lost" }
