package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/spec"
)

// jobFlags are the flags submit and run share (sbatch takes a few of them
// and Slurm's options for the rest). A set flag overrides the same field of a
// job file or script.
type jobFlags struct {
	name, queue         string
	cpus, mem, walltime string
	gpus                int64
	tasks               int
	priority, retries   int
	env, constraints    []string
	workdir             string
	idempotencyKey      string

	// Arrays, dependencies and gang placement: job-level, like Slurm's.
	array, dependency             string
	afterOK, afterAny, afterNotOK []string
	minTasks                      int
	topology, placement           string
	spread                        bool
}

func (f *jobFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.name, "name", "", "job name")
	fs.StringVar(&f.queue, "queue", "", "queue to submit to (default: the server's default queue)")
	fs.StringVar(&f.cpus, "cpus", "", "CPUs per task: 2, 0.5 or 500m")
	fs.StringVar(&f.mem, "mem", "", "memory per task: 512M, 4G, 1.5GiB")
	fs.Int64Var(&f.gpus, "gpus", 0, "GPUs per task")
	fs.IntVar(&f.tasks, "tasks", 0, "number of tasks (default 1)")
	fs.StringVar(&f.walltime, "time", "", "walltime limit: 90s, 1h30m, 2:00:00, 1-00:00:00")
	fs.IntVar(&f.priority, "priority", 0, "priority within the queue (higher runs first)")
	fs.IntVar(&f.retries, "retries", 0, "times to requeue the job if its node is lost")
	fs.StringArrayVar(&f.env, "env", nil, "environment variable K=V for every task (repeatable)")
	fs.StringArrayVar(&f.constraints, "constraint", nil, "run only on nodes labelled k=v (repeatable)")
	fs.StringVar(&f.workdir, "workdir", "", "working directory of the tasks on the node")
	fs.StringVar(&f.idempotencyKey, "idempotency-key", "", "a retried submit with the same key returns the first job's ID")
	fs.StringVarP(&f.array, "array", "a", "", "a job array, one job per index: 0-99, 1,3,5-7, 0-15:4; %N runs at most N at once (1-1000%50)")
	fs.StringVarP(&f.dependency, "dependency", "d", "", "start after other jobs, in Slurm's syntax: afterok:12:13,afterany:14_2")
	fs.StringSliceVar(&f.afterOK, "afterok", nil, "start after these jobs succeeded (IDs, 12_3 elements or array IDs; comma-separated, repeatable)")
	fs.StringSliceVar(&f.afterAny, "afterany", nil, "start after these jobs ended, however they ended")
	fs.StringSliceVar(&f.afterNotOK, "afternotok", nil, "start after these jobs failed or were cancelled")
	fs.IntVar(&f.minTasks, "min-tasks", 0, "let the job start with at least this many of its tasks when not all fit (default: all)")
	fs.StringVar(&f.topology, "topology", "", "keep every task on nodes with the same value of this node label, e.g. rack")
	fs.StringVar(&f.placement, "placement", "", "pack (default: fill nodes) or spread (one task per node where possible)")
	fs.BoolVar(&f.spread, "spread", false, "same as --placement spread")
}

// groupFlags are the flags that describe one task group; with a job file of
// several groups they would be ambiguous.
var groupFlags = []string{"cpus", "mem", "gpus", "tasks", "env", "constraint", "workdir"}

// applyFlags overrides js with every flag the user set (fs.Changed) and
// with cmdline, the words after "--" (nil: keep the file's command).
func (f *jobFlags) apply(js *api.JobSpec, fs *pflag.FlagSet, cmdline []string) error {
	set := fs.Changed
	if set("name") {
		js.Name = f.name
	}
	if set("queue") {
		js.Queue = f.queue
	}
	if set("priority") {
		js.Priority = f.priority
	}
	if set("retries") {
		if f.retries < 0 {
			return fmt.Errorf("--retries: must be 0 or more (got %d)", f.retries)
		}
		js.MaxRetries = f.retries
	}
	if set("time") {
		d, err := spec.ParseWalltime(f.walltime)
		if err != nil {
			return fmt.Errorf("--time: %w", err)
		}
		js.Walltime = api.Duration(d)
	}
	if set("idempotency-key") {
		js.IdempotencyKey = f.idempotencyKey
	}
	if err := f.applyScheduling(js, set); err != nil {
		return err
	}

	touchesGroup := len(cmdline) > 0
	for _, name := range groupFlags {
		touchesGroup = touchesGroup || set(name)
	}
	if !touchesGroup {
		return nil
	}
	if len(js.Groups) == 0 {
		js.Groups = []api.TaskGroupSpec{{}}
	}
	if len(js.Groups) > 1 {
		which := "the command after --"
		for _, name := range groupFlags {
			if set(name) {
				which = "--" + name
				break
			}
		}
		return fmt.Errorf("%s: the job file has %d task groups, so it is unclear which one to change; set it per group in the file", which, len(js.Groups))
	}
	g := &js.Groups[0]
	if len(cmdline) > 0 {
		g.Command = append([]string(nil), cmdline...)
	}
	if set("cpus") {
		m, err := spec.ParseCPU(f.cpus)
		if err != nil {
			return fmt.Errorf("--cpus: %w", err)
		}
		g.Resources.MilliCPU = m
	}
	if set("mem") {
		b, err := spec.ParseSize(f.mem)
		if err != nil {
			return fmt.Errorf("--mem: %w", err)
		}
		g.Resources.MemoryBytes = b
	}
	if set("gpus") {
		if f.gpus < 0 {
			return fmt.Errorf("--gpus: must be 0 or more (got %d)", f.gpus)
		}
		g.Resources.GPUs = f.gpus
	}
	if set("tasks") {
		if f.tasks < 1 {
			return fmt.Errorf("--tasks: must be at least 1 (got %d)", f.tasks)
		}
		g.Count = f.tasks
	}
	if set("workdir") {
		g.WorkDir = f.workdir
	}
	var err error
	if g.Env, err = mergePairs(g.Env, f.env, "--env"); err != nil {
		return err
	}
	if g.Constraints, err = mergePairs(g.Constraints, f.constraints, "--constraint"); err != nil {
		return err
	}
	return nil
}

// applyScheduling sets the array, dependency and gang flags. Dependency
// flags replace the file's dependencies as a whole.
func (f *jobFlags) applyScheduling(js *api.JobSpec, set func(string) bool) error {
	if set("array") {
		if _, err := spec.ParseArray(f.array); err != nil {
			return fmt.Errorf("--array: %w", err)
		}
		js.Array = f.array
	}
	if set("dependency") || set("afterok") || set("afterany") || set("afternotok") {
		js.Dependencies = nil
		if set("dependency") {
			ds, err := spec.ParseDependency(f.dependency)
			if err != nil {
				return fmt.Errorf("--dependency: %w", err)
			}
			js.Dependencies = ds
		}
		for _, flag := range []struct {
			name string
			refs []string
		}{{"afterok", f.afterOK}, {"afterany", f.afterAny}, {"afternotok", f.afterNotOK}} {
			for _, ref := range flag.refs {
				if _, err := api.ParseJobRef(strings.TrimSpace(ref)); err != nil {
					return fmt.Errorf("--%s: %w", flag.name, err)
				}
				js.Dependencies = append(js.Dependencies, api.DependencySpec{Type: flag.name, Job: strings.TrimSpace(ref)})
			}
		}
	}
	if set("min-tasks") {
		if f.minTasks < 1 {
			return fmt.Errorf("--min-tasks: must be at least 1 (got %d)", f.minTasks)
		}
		js.MinTasks = f.minTasks
	}
	if set("topology") {
		js.Topology = f.topology
	}
	if set("placement") {
		if f.placement != "pack" && f.placement != "spread" {
			return fmt.Errorf("--placement: must be pack or spread (got %q)", f.placement)
		}
		js.Placement = f.placement
	}
	if set("spread") && f.spread {
		if set("placement") && f.placement != "spread" {
			return fmt.Errorf("--spread: contradicts --placement %s", f.placement)
		}
		js.Placement = "spread"
	}
	return nil
}

// mergePairs adds K=V words to m (later ones win).
func mergePairs(m map[string]string, pairs []string, flag string) (map[string]string, error) {
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return m, fmt.Errorf("%s: want KEY=VALUE (got %q)", flag, p)
		}
		if m == nil {
			m = make(map[string]string)
		}
		m[k] = v
	}
	return m, nil
}

// splitDash separates positional arguments from the command after "--".
func splitDash(c *cobra.Command, argv []string) (positional, cmdline []string) {
	if n := c.ArgsLenAtDash(); n >= 0 {
		return argv[:n], argv[n:]
	}
	return argv, nil
}

// readInput reads a named file, or stdin for "-".
func (a *app) readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(a.stdin)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// buildSpec turns `[JOBFILE] [flags] [-- CMD…]` into a checked JobSpec.
func (a *app) buildSpec(c *cobra.Command, f *jobFlags, argv []string) (api.JobSpec, error) {
	positional, cmdline := splitDash(c, argv)
	if len(positional) > 1 {
		return api.JobSpec{}, &usageError{cmd: c, err: fmt.Errorf("takes at most one JOBFILE, got %d arguments (put the command after --, e.g. %s -- sleep 10)", len(positional), c.CommandPath())}
	}
	var js api.JobSpec
	if len(positional) == 1 {
		b, err := a.readInput(positional[0])
		if err != nil {
			return js, fmt.Errorf("job file: %w", err)
		}
		if js, err = spec.ParseJobFile(b); err != nil {
			return js, fmt.Errorf("%s: %w", displayName(positional[0]), err)
		}
	} else if len(cmdline) == 0 {
		return js, &usageError{cmd: c, err: fmt.Errorf("nothing to run: give a JOBFILE or a command after --, e.g. %s -- sleep 10", c.CommandPath())}
	}
	if err := f.apply(&js, c.Flags(), cmdline); err != nil {
		return js, err
	}
	return a.finishSpec(js)
}

// finishSpec fills the owner and checks the spec locally, so mistakes are
// reported before anything is sent.
func (a *app) finishSpec(js api.JobSpec) (api.JobSpec, error) {
	if js.Owner == "" {
		js.Owner = a.user()
	}
	spec.Normalize(&js)
	if err := spec.Validate(&js); err != nil {
		return js, err
	}
	return js, nil
}

func displayName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

func (a *app) submitCommand() *cobra.Command {
	var f jobFlags
	c := &cobra.Command{
		Use:   "submit [JOBFILE] [flags] [-- CMD ARGS…]",
		Short: "Submit a job and print its ID",
		Long: "Submit a job described by a YAML job file (- reads stdin), by flags and a\n" +
			"command after --, or both (flags override the file). Prints the job ID alone,\n" +
			"so scripts can write: id=$(dure submit -- sleep 10). With --array it prints\n" +
			"the array's ID; its elements are ID_INDEX (12_3).",
		Example: "  dure submit -- sleep 10\n" +
			"  dure submit --cpus 4 --mem 8G --gpus 1 --time 2h --name train -- python train.py\n" +
			"  dure submit job.yaml --queue short\n" +
			"  dure submit --array 0-99%10 -- sh -c './sweep.sh $DURE_ARRAY_TASK_ID'\n" +
			"  dure submit --afterok 12 -- ./report.sh\n" +
			"  dure submit --tasks 8 --gpus 1 --topology rack --min-tasks 4 -- ./train.sh",
		RunE: func(c *cobra.Command, argv []string) error {
			js, err := a.buildSpec(c, &f, argv)
			if err != nil {
				return err
			}
			id, err := a.client().SubmitJob(c.Context(), js)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, id)
			return nil
		},
	}
	f.register(c.Flags())
	return c
}

func (a *app) sbatchCommand() *cobra.Command {
	var f jobFlags // only the flags below; the rest are sbatch options
	var parsable bool
	c := &cobra.Command{
		Use:   "sbatch [options] (SCRIPT [ARGS…] | --wrap=CMD)",
		Short: "Submit a batch script with #SBATCH / #DURE directives",
		Long: "Submit a shell script the way Slurm's sbatch does: directives in #SBATCH or\n" +
			"#DURE comment lines at the top set the job's resources. Every option such a\n" +
			"line accepts may also be given before SCRIPT, in sbatch's forms (--time=1:00,\n" +
			"--time 1:00, -t 1:00, -t1:00), and overrides the script's:\n" +
			indentWrap(spec.SbatchOptionList(), "  ", 80) + "\n" +
			"dure submit's --name, --queue, --tasks, --cpus and --workdir are understood too.\n" +
			"--wrap=CMD submits \"#!/bin/sh\\nCMD\" instead of a script. SCRIPT - reads the\n" +
			"script from stdin. Words after SCRIPT reach it as $1, $2, …, even those that\n" +
			"look like options, as in sbatch.",
		Example: "  dure sbatch train.sh\n" +
			"  dure sbatch -J nightly -n 4 -c 2 -t 10:00 -p gpu train.sh --epochs 3\n" +
			"  dure sbatch --wrap 'echo hello'\n" +
			"  jobid=$(dure sbatch --parsable train.sh)",
		DisableFlagParsing:    true, // sbatch's own rules: see SplitSbatchArgs
		DisableFlagsInUseLine: true,
		RunE: func(c *cobra.Command, argv []string) error {
			c.InheritedFlags() // merges --addr into c.Flags()
			own := c.Flags()
			spellings := map[string]bool{}
			own.VisitAll(func(fl *pflag.Flag) {
				spellings["--"+fl.Name] = fl.NoOptDefVal == ""
				if fl.Shorthand != "" {
					spellings["-"+fl.Shorthand] = fl.NoOptDefVal == ""
				}
			})
			cl, err := spec.SplitSbatchArgs(argv, spellings)
			if err != nil {
				return &usageError{cmd: c, err: err}
			}
			if err := own.Parse(cl.Own); err != nil {
				return &usageError{cmd: c, err: err}
			}
			if help, _ := own.GetBool("help"); help {
				return c.Help()
			}
			js, err := a.sbatchSpec(c, &f, &cl)
			if err != nil {
				return err
			}
			id, err := a.client().SubmitJob(c.Context(), js)
			if err != nil {
				return err
			}
			if parsable {
				fmt.Fprintln(a.stdout, id)
			} else {
				fmt.Fprintf(a.stdout, "Submitted batch job %d\n", id)
			}
			return nil
		},
	}
	fs := c.Flags()
	fs.BoolVar(&parsable, "parsable", false, "print only the job ID")
	fs.StringArrayVar(&f.env, "env", nil, "environment variable K=V for every task (repeatable)")
	fs.StringVar(&f.idempotencyKey, "idempotency-key", "", "a retried submit with the same key returns the first job's ID")
	fs.StringSliceVar(&f.afterOK, "afterok", nil, "start after these jobs succeeded (replaces the script's dependencies)")
	fs.StringSliceVar(&f.afterAny, "afterany", nil, "start after these jobs ended, however they ended")
	fs.StringSliceVar(&f.afterNotOK, "afternotok", nil, "start after these jobs failed or were cancelled")
	return c
}

// indentWrap breaks a comma-separated list into indented lines of at most
// width bytes.
func indentWrap(list, indent string, width int) string {
	var b strings.Builder
	line := indent
	for i, item := range strings.Split(list, ", ") {
		if i > 0 {
			item = " " + item
			line += ","
		}
		if len(line)+len(item) > width && line != indent {
			b.WriteString(line + "\n")
			line = indent + item[1:]
			continue
		}
		line += item
	}
	return b.String() + line
}

// sbatchSpec reads the script of a split sbatch command line and builds the
// checked job.
func (a *app) sbatchSpec(c *cobra.Command, f *jobFlags, cl *spec.SbatchCommandLine) (api.JobSpec, error) {
	var script []byte
	switch {
	case cl.HasWrap:
	case cl.Script == "":
		return api.JobSpec{}, &usageError{cmd: c, err: fmt.Errorf("nothing to run: give a SCRIPT (- reads stdin) or --wrap=CMD, e.g. %s --wrap 'echo hello'", c.CommandPath())}
	default:
		var err error
		if script, err = a.readInput(cl.Script); err != nil {
			return api.JobSpec{}, fmt.Errorf("script: %w", err)
		}
	}
	fs := c.Flags()
	after := fs.Changed("afterok") || fs.Changed("afterany") || fs.Changed("afternotok")
	if after && cl.Sets("dependency") {
		return api.JobSpec{}, &usageError{cmd: c, err: errors.New("--afterok, --afterany and --afternotok cannot be combined with -d/--dependency; write every condition in --dependency (afterok:12,afterany:13)")}
	}
	js, err := cl.Parse(script, displayName(cl.Script))
	if err != nil {
		return js, err
	}
	if js.Name == "" {
		// as sbatch names a job after its script, or "wrap"
		switch {
		case cl.HasWrap:
			js.Name = "wrap"
		case cl.Script != "-":
			js.Name = filepath.Base(cl.Script)
		}
	}
	if err := f.apply(&js, fs, nil); err != nil {
		return js, err
	}
	if len(cl.ScriptArgs) > 0 {
		js.Groups[0].Command = append(js.Groups[0].Command, cl.ScriptArgs...)
	}
	return a.finishSpec(js)
}
