package spec

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// RequeueRetries is what sbatch's --requeue means in dure: the job is
// requeued up to this many times after losing its node (Slurm's default
// MaxBatchRequeue).
const RequeueRetries = 5

// Bare numbers in these Slurm directives count megabytes, as in Slurm.
const slurmSizeUnit = 1 << 20

// sbatchJob collects directives. Quantities that depend on each other
// (memory per CPU, GPUs per job) are resolved after all lines are read, so
// the order of directives does not matter; a directive repeated later wins.
type sbatchJob struct {
	spec api.JobSpec
	g    api.TaskGroupSpec

	// Each *At is where the directive that set the value was, 0 if none.
	mem, memPerCPU  int64
	memAt, memCPUAt where
	gpus            int64 // --gpus: for the whole job
	gpusPerTask     int64 // --gpus-per-task or --gres=gpu:N
	gpusAt          where
	perTaskAt       where
	constraintsAt   where
}

// where is the origin of a directive: its line in the script, or
// onCommandLine; 0 is "not set".
type where int

const onCommandLine where = -1

func (w where) set() bool { return w != 0 }

// line is the script line for error messages, 0 for the command line.
func (w where) line() int { return max(int(w), 0) }

// overrides reports whether a value set at w replaces a rival set at other:
// a command-line option beats a script line, as in sbatch.
func (w where) overrides(other where) bool { return w == onCommandLine && other > 0 }

type argKind int

const (
	noArg argKind = iota
	requiredArg
	optionalArg // only as --name=value
)

type directive struct {
	long  string
	short byte
	arg   argKind
	apply func(j *sbatchJob, v string, at where) error
}

// directives are the options understood in #SBATCH and #DURE lines. The
// order is the order of the list in error messages.
var directives = []directive{
	{"job-name", 'J', requiredArg, func(j *sbatchJob, v string, _ where) error { j.spec.Name = v; return nil }},
	{"partition", 'p', requiredArg, func(j *sbatchJob, v string, _ where) error {
		if strings.Contains(v, ",") {
			return fmt.Errorf("a job goes to one queue; got the list %q", v)
		}
		j.spec.Queue = v
		return nil
	}},
	{"ntasks", 'n', requiredArg, func(j *sbatchJob, v string, _ where) (err error) {
		if j.g.Count, err = wholeNumber(v); err == nil && j.g.Count < 1 {
			return fmt.Errorf("must be at least 1; got %d", j.g.Count)
		}
		return err
	}},
	{"cpus-per-task", 'c', requiredArg, func(j *sbatchJob, v string, _ where) (err error) {
		j.g.Resources.MilliCPU, err = ParseCPU(v)
		return err
	}},
	{"mem", 0, requiredArg, func(j *sbatchJob, v string, at where) (err error) {
		if j.mem, err = parseSize(v, slurmSizeUnit); err == nil && j.mem == 0 {
			return errors.New("0 (all of a node's memory) is not supported; ask for an amount such as 4G")
		}
		j.memAt = at
		return err
	}},
	{"mem-per-cpu", 0, requiredArg, func(j *sbatchJob, v string, at where) (err error) {
		j.memPerCPU, err = parseSize(v, slurmSizeUnit)
		j.memCPUAt = at
		return err
	}},
	{"gpus", 'G', requiredArg, func(j *sbatchJob, v string, at where) (err error) {
		j.gpus, err = gpuCount(v)
		j.gpusAt = at
		return err
	}},
	{"gpus-per-task", 0, requiredArg, func(j *sbatchJob, v string, at where) (err error) {
		j.gpusPerTask, err = gpuCount(v)
		j.perTaskAt = at
		return err
	}},
	{"gres", 0, requiredArg, func(j *sbatchJob, v string, at where) (err error) {
		j.gpusPerTask, err = gres(v)
		j.perTaskAt = at
		return err
	}},
	{"time", 't', requiredArg, func(j *sbatchJob, v string, _ where) error {
		d, err := ParseWalltime(v)
		j.spec.Walltime = api.Duration(d)
		return err
	}},
	{"nice", 0, optionalArg, func(j *sbatchJob, v string, _ where) error {
		n := 100 // Slurm's default adjustment for a bare --nice
		if v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("want a whole number; got %q", v)
			}
		}
		if n == math.MinInt {
			return fmt.Errorf("%d is out of range", n)
		}
		j.spec.Priority = -n // nicer means lower priority
		return nil
	}},
	{"priority", 0, requiredArg, func(j *sbatchJob, v string, _ where) (err error) {
		j.spec.Priority, err = strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a whole number; got %q", v)
		}
		return nil
	}},
	{"requeue", 0, noArg, func(j *sbatchJob, _ string, _ where) error { j.spec.MaxRetries = RequeueRetries; return nil }},
	{"no-requeue", 0, noArg, func(j *sbatchJob, _ string, _ where) error { j.spec.MaxRetries = 0; return nil }},
	{"retries", 0, requiredArg, func(j *sbatchJob, v string, _ where) (err error) {
		j.spec.MaxRetries, err = strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a whole number; got %q", v)
		}
		return nil
	}},
	{"chdir", 'D', requiredArg, func(j *sbatchJob, v string, _ where) error { j.g.WorkDir = v; return nil }},
	{"constraint", 'C', requiredArg, func(j *sbatchJob, v string, at where) error {
		if at.overrides(j.constraintsAt) {
			j.g.Constraints = nil // the command line's labels replace the script's
		}
		j.constraintsAt = at
		if j.g.Constraints == nil {
			j.g.Constraints = map[string]string{}
		}
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("want node labels as key=value[,key=value]; got %q (Slurm feature expressions are not supported)", v)
			}
			j.g.Constraints[k] = val
		}
		return nil
	}},
	{"tmp", 0, requiredArg, func(j *sbatchJob, v string, _ where) (err error) {
		j.g.Resources.ScratchBytes, err = parseSize(v, slurmSizeUnit)
		return err
	}},
	{"array", 'a', requiredArg, func(j *sbatchJob, v string, _ where) error {
		_, err := ParseArray(v)
		j.spec.Array = v
		return err
	}},
	{"dependency", 'd', requiredArg, func(j *sbatchJob, v string, _ where) (err error) {
		j.spec.Dependencies, err = ParseDependency(v)
		return err
	}},
	{"min-tasks", 0, requiredArg, func(j *sbatchJob, v string, _ where) (err error) {
		if j.spec.MinTasks, err = wholeNumber(v); err == nil && j.spec.MinTasks < 1 {
			return fmt.Errorf("must be at least 1; got %d", j.spec.MinTasks)
		}
		return err
	}},
	{"topology", 0, requiredArg, func(j *sbatchJob, v string, _ where) error { j.spec.Topology = v; return nil }},
	{"placement", 0, requiredArg, func(j *sbatchJob, v string, _ where) error { j.spec.Placement = v; return nil }},
	{"spread", 0, noArg, func(j *sbatchJob, _ string, _ where) error { j.spec.Placement = model.PlacementSpread; return nil }},
	{"spread-job", 0, noArg, func(j *sbatchJob, _ string, _ where) error { j.spec.Placement = model.PlacementSpread; return nil }},
}

// unsupported are Slurm options people often write, with what to do instead.
var unsupported = map[string]string{
	"output":            "output files are not supported yet; read a job's output with `dure logs ID`",
	"error":             "output files are not supported yet; read a job's output with `dure logs ID`",
	"export":            "is not supported yet; set variables in the script itself",
	"nodes":             "dure places tasks, not nodes: ask for tasks with --ntasks and per-task resources",
	"ntasks-per-node":   "dure places tasks, not nodes: ask for tasks with --ntasks and per-task resources",
	"wrap":              "has no meaning inside a script",
	"mem-per-gpu":       "is not supported; ask for memory per task with --mem",
	"cpus-per-gpu":      "is not supported; ask for CPUs per task with --cpus-per-task",
	"gpus-per-node":     "is not supported; ask for GPUs per task with --gpus-per-task",
	"ntasks-per-core":   "is not supported",
	"ntasks-per-gpu":    "is not supported",
	"ntasks-per-socket": "is not supported",
}

var unsupportedShort = map[byte]string{'o': "output", 'e': "error", 'N': "nodes"}

// ParseSbatch reads a batch script's #SBATCH and #DURE directives and returns
// a job with one group that runs the script itself (see scriptCommand: the
// interpreter from the #! line, default /bin/sh, is given the script text).
//
// As in sbatch, directives start at the beginning of a line and are read
// until the first line that is neither blank nor a comment; later ones are
// ignored. A directive repeated later wins. Both "--time=1:00" and
// "--time 1:00", and both "-n4" and "-n 4" are accepted. Unknown directives
// are errors. Call Normalize and Validate on the result. Options given on
// sbatch's command line are read by SplitSbatchArgs.
func ParseSbatch(script []byte) (api.JobSpec, error) {
	j := &sbatchJob{}
	cmd, err := j.readScript(string(script), true)
	if err != nil {
		return api.JobSpec{}, err
	}
	if _, err := j.finish(); err != nil {
		return api.JobSpec{}, err
	}
	return j.build(cmd), nil
}

// readScript returns the command that runs text and, when directives is
// set, applies its directive lines.
func (j *sbatchJob) readScript(text string, directives bool) ([]string, error) {
	cmd, err := scriptCommand(text)
	if err != nil {
		return nil, &ParseError{Message: err.Error(), Err: err}
	}
	if !directives {
		return cmd, nil
	}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if !strings.HasPrefix(trimmed, "#") {
			break
		}
		rest, ok := directiveText(line)
		if !ok {
			continue // a comment
		}
		words, err := splitDirective(rest)
		if err != nil {
			return nil, &ParseError{Line: n, Message: err.Error()}
		}
		if err := j.apply(words, where(n)); err != nil {
			return nil, err
		}
	}
	return cmd, nil
}

func (j *sbatchJob) build(cmd []string) api.JobSpec {
	j.g.Command = cmd
	j.spec.Groups = []api.TaskGroupSpec{j.g}
	return j.spec
}

// directiveText returns what follows "#SBATCH" or "#DURE" on a directive
// line. The prefix must start the line and be followed by a space, a tab or
// nothing; "# SBATCH" and "#SBATCHX" are comments, as in sbatch.
func directiveText(line string) (string, bool) {
	for _, prefix := range []string{"#SBATCH", "#DURE"} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			if rest == "" || rest[0] == ' ' || rest[0] == '\t' {
				return rest, true
			}
		}
	}
	return "", false
}

// splitDirective splits a directive line into words the way a shell would:
// single and double quotes, backslash escapes, and a comment from a '#' that
// starts a word.
func splitDirective(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			switch {
			case c == quote:
				quote = 0
			case c == '\\' && quote == '"' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0:
				i++
				cur.WriteByte(s[i])
			default:
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, nil
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// apply applies option words from one directive line, or from the command
// line (at == onCommandLine), in order.
func (j *sbatchJob) apply(words []string, at where) error {
	for i := 0; i < len(words); i++ {
		d, name, val, hasVal, err := resolve(words[i], at)
		if err != nil {
			return err
		}
		if d == nil {
			msg := "unknown directive; supported are " + supportedList()
			if at == onCommandLine {
				msg = unknownOption(name, nil)
			}
			return &ParseError{Line: at.line(), Field: name, Message: msg}
		}
		switch d.arg {
		case noArg:
			if hasVal {
				return &ParseError{Line: at.line(), Field: name, Message: "takes no value"}
			}
		case requiredArg:
			if !hasVal {
				if i+1 >= len(words) {
					return &ParseError{Line: at.line(), Field: name, Message: "needs a value"}
				}
				i++
				val = words[i]
			}
		}
		if err := d.apply(j, val, at); err != nil {
			return &ParseError{Line: at.line(), Field: name, Message: err.Error(), Err: err}
		}
	}
	return nil
}

// resolve finds the directive an option word names: "--time=1:00", "--time",
// "-t1:00" or "-t". name is the option as written ("--time", "-t"); val is a
// value attached to the word. On the command line dure submit's spellings
// (cliAliases) are understood too. d is nil for an unknown option.
func resolve(w string, at where) (d *directive, name, val string, hasVal bool, err error) {
	switch {
	case strings.HasPrefix(w, "--") && len(w) > 2:
		long := ""
		long, val, hasVal = strings.Cut(w[2:], "=")
		name = "--" + long
		if msg, ok := unsupported[long]; ok {
			return nil, name, "", false, &ParseError{Line: at.line(), Field: name, Message: msg}
		}
		d = findLong(long)
		if d == nil && at == onCommandLine {
			d = findLong(cliAliases[long])
		}
	case strings.HasPrefix(w, "-") && len(w) > 1 && w[1] != '-':
		name = w[:2]
		if long, ok := unsupportedShort[w[1]]; ok {
			return nil, name, "", false, &ParseError{Line: at.line(), Field: name, Message: unsupported[long]}
		}
		d = findShort(w[1])
		if len(w) > 2 {
			// "-n4"; "-n=4" is read as "4" too, though getopt would not
			val, hasVal = strings.TrimPrefix(w[2:], "="), true
		}
	default:
		return nil, "", "", false, &ParseError{Line: at.line(), Message: fmt.Sprintf("unexpected %q: a directive line holds options such as --time=1:00", w)}
	}
	return d, name, val, hasVal, nil
}

func findLong(name string) *directive {
	for i := range directives {
		if directives[i].long == name {
			return &directives[i]
		}
	}
	return nil
}

func findShort(c byte) *directive {
	for i := range directives {
		if directives[i].short != 0 && directives[i].short == c {
			return &directives[i]
		}
	}
	return nil
}

func supportedList() string {
	parts := make([]string, len(directives))
	for i, d := range directives {
		if d.short != 0 {
			parts[i] = fmt.Sprintf("-%c/--%s", d.short, d.long)
		} else {
			parts[i] = "--" + d.long
		}
	}
	return strings.Join(parts, ", ")
}

// finish resolves the directives that depend on others. It returns where
// the directive named in an error was given.
func (j *sbatchJob) finish() (where, error) {
	tasks := j.g.Count
	if tasks == 0 {
		tasks = DefaultCount
	}
	// Of two rival directives, one on the command line replaces the script's.
	switch {
	case j.memAt.overrides(j.memCPUAt):
		j.memCPUAt = 0
	case j.memCPUAt.overrides(j.memAt):
		j.memAt = 0
	}
	switch {
	case j.gpusAt.overrides(j.perTaskAt):
		j.perTaskAt = 0
	case j.perTaskAt.overrides(j.gpusAt):
		j.gpusAt = 0
	}
	// Rivals still both set come from the same place; onCommandLine is the
	// smaller, so max names a script's later line.
	switch {
	case j.memAt.set() && j.memCPUAt.set():
		at := max(j.memAt, j.memCPUAt)
		return at, &ParseError{Line: at.line(), Field: "--mem-per-cpu", Message: "cannot be used together with --mem"}
	case j.memAt.set():
		j.g.Resources.MemoryBytes = j.mem
	case j.memCPUAt.set():
		milli := j.g.Resources.MilliCPU
		if milli == 0 {
			milli = DefaultMilliCPU
		}
		// memory per CPU × CPUs per task, rounded up to a byte
		n := new(big.Int).Mul(big.NewInt(j.memPerCPU), big.NewInt(milli))
		n.Add(n, big.NewInt(999))
		n.Quo(n, big.NewInt(1000))
		if !n.IsInt64() {
			return j.memCPUAt, &ParseError{Line: j.memCPUAt.line(), Field: "--mem-per-cpu", Message: "memory per task is too large"}
		}
		j.g.Resources.MemoryBytes = n.Int64()
	}
	switch {
	case j.gpusAt.set() && j.perTaskAt.set():
		at := max(j.gpusAt, j.perTaskAt)
		return at, &ParseError{Line: at.line(), Field: "--gpus", Message: "cannot be used together with --gpus-per-task or --gres"}
	case j.gpusAt.set():
		if j.gpus%int64(tasks) != 0 {
			return j.gpusAt, &ParseError{Line: j.gpusAt.line(), Field: "--gpus", Message: fmt.Sprintf("%d GPUs cannot be shared evenly by %d tasks; every task gets the same number (use --gpus-per-task)", j.gpus, tasks)}
		}
		j.g.Resources.GPUs = j.gpus / int64(tasks)
	case j.perTaskAt.set():
		j.g.Resources.GPUs = j.gpusPerTask
	}
	return 0, nil
}

func wholeNumber(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("want a whole number; got %q", v)
	}
	return n, nil
}

// gpuCount reads the value of --gpus: a count, without Slurm's GPU type.
func gpuCount(v string) (int64, error) {
	if strings.Contains(v, ":") {
		return 0, fmt.Errorf("GPU types (%q) are not supported yet; ask for a count and choose the model with --constraint=gpu.model=MODEL", v)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a number of GPUs; got %q", v)
	}
	return n, nil
}

// gres reads --gres. Only GPUs are generic resources in dure: "gpu" (one),
// "gpu:N". Slurm counts gres per node; dure counts them per task.
func gres(v string) (int64, error) {
	name, count, hasCount := strings.Cut(v, ":")
	name = strings.TrimPrefix(name, "gres/")
	if name != "gpu" || strings.Contains(v, ",") {
		return 0, fmt.Errorf("only gpu is supported (gpu or gpu:N); got %q", v)
	}
	if !hasCount {
		return 1, nil
	}
	return gpuCount(count)
}
