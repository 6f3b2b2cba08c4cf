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

	// Each *Line is the line of the directive that set the value, 0 if none.
	mem, memPerCPU      int64
	memLine, memCPULine int
	gpus                int64 // --gpus: for the whole job
	gpusPerTask         int64 // --gpus-per-task or --gres=gpu:N
	gpusLine            int
	perTaskLine         int
}

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
	apply func(j *sbatchJob, v string, line int) error
}

// directives are the options understood in #SBATCH and #DURE lines. The
// order is the order of the list in error messages.
var directives = []directive{
	{"job-name", 'J', requiredArg, func(j *sbatchJob, v string, _ int) error { j.spec.Name = v; return nil }},
	{"partition", 'p', requiredArg, func(j *sbatchJob, v string, _ int) error {
		if strings.Contains(v, ",") {
			return fmt.Errorf("a job goes to one queue; got the list %q", v)
		}
		j.spec.Queue = v
		return nil
	}},
	{"ntasks", 'n', requiredArg, func(j *sbatchJob, v string, _ int) (err error) {
		if j.g.Count, err = wholeNumber(v); err == nil && j.g.Count < 1 {
			return fmt.Errorf("must be at least 1; got %d", j.g.Count)
		}
		return err
	}},
	{"cpus-per-task", 'c', requiredArg, func(j *sbatchJob, v string, _ int) (err error) {
		j.g.Resources.MilliCPU, err = ParseCPU(v)
		return err
	}},
	{"mem", 0, requiredArg, func(j *sbatchJob, v string, line int) (err error) {
		if j.mem, err = parseSize(v, slurmSizeUnit); err == nil && j.mem == 0 {
			return errors.New("0 (all of a node's memory) is not supported; ask for an amount such as 4G")
		}
		j.memLine = line
		return err
	}},
	{"mem-per-cpu", 0, requiredArg, func(j *sbatchJob, v string, line int) (err error) {
		j.memPerCPU, err = parseSize(v, slurmSizeUnit)
		j.memCPULine = line
		return err
	}},
	{"gpus", 'G', requiredArg, func(j *sbatchJob, v string, line int) (err error) {
		j.gpus, err = gpuCount(v)
		j.gpusLine = line
		return err
	}},
	{"gpus-per-task", 0, requiredArg, func(j *sbatchJob, v string, line int) (err error) {
		j.gpusPerTask, err = gpuCount(v)
		j.perTaskLine = line
		return err
	}},
	{"gres", 0, requiredArg, func(j *sbatchJob, v string, line int) (err error) {
		j.gpusPerTask, err = gres(v)
		j.perTaskLine = line
		return err
	}},
	{"time", 't', requiredArg, func(j *sbatchJob, v string, _ int) error {
		d, err := ParseWalltime(v)
		j.spec.Walltime = api.Duration(d)
		return err
	}},
	{"nice", 0, optionalArg, func(j *sbatchJob, v string, _ int) error {
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
	{"priority", 0, requiredArg, func(j *sbatchJob, v string, _ int) (err error) {
		j.spec.Priority, err = strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a whole number; got %q", v)
		}
		return nil
	}},
	{"requeue", 0, noArg, func(j *sbatchJob, _ string, _ int) error { j.spec.MaxRetries = RequeueRetries; return nil }},
	{"no-requeue", 0, noArg, func(j *sbatchJob, _ string, _ int) error { j.spec.MaxRetries = 0; return nil }},
	{"retries", 0, requiredArg, func(j *sbatchJob, v string, _ int) (err error) {
		j.spec.MaxRetries, err = strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a whole number; got %q", v)
		}
		return nil
	}},
	{"chdir", 'D', requiredArg, func(j *sbatchJob, v string, _ int) error { j.g.WorkDir = v; return nil }},
	{"constraint", 'C', requiredArg, func(j *sbatchJob, v string, _ int) error {
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
	{"tmp", 0, requiredArg, func(j *sbatchJob, v string, _ int) (err error) {
		j.g.Resources.ScratchBytes, err = parseSize(v, slurmSizeUnit)
		return err
	}},
	{"array", 'a', requiredArg, func(j *sbatchJob, v string, _ int) error {
		_, err := ParseArray(v)
		j.spec.Array = v
		return err
	}},
	{"dependency", 'd', requiredArg, func(j *sbatchJob, v string, _ int) (err error) {
		j.spec.Dependencies, err = ParseDependency(v)
		return err
	}},
	{"min-tasks", 0, requiredArg, func(j *sbatchJob, v string, _ int) (err error) {
		if j.spec.MinTasks, err = wholeNumber(v); err == nil && j.spec.MinTasks < 1 {
			return fmt.Errorf("must be at least 1; got %d", j.spec.MinTasks)
		}
		return err
	}},
	{"topology", 0, requiredArg, func(j *sbatchJob, v string, _ int) error { j.spec.Topology = v; return nil }},
	{"placement", 0, requiredArg, func(j *sbatchJob, v string, _ int) error { j.spec.Placement = v; return nil }},
	{"spread", 0, noArg, func(j *sbatchJob, _ string, _ int) error { j.spec.Placement = model.PlacementSpread; return nil }},
	{"spread-job", 0, noArg, func(j *sbatchJob, _ string, _ int) error { j.spec.Placement = model.PlacementSpread; return nil }},
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
// are errors. Call Normalize and Validate on the result.
func ParseSbatch(script []byte) (api.JobSpec, error) {
	text := string(script)
	cmd, err := scriptCommand(text)
	if err != nil {
		return api.JobSpec{}, &ParseError{Message: err.Error(), Err: err}
	}
	j := &sbatchJob{}
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
			return api.JobSpec{}, &ParseError{Line: n, Message: err.Error()}
		}
		if err := j.apply(words, n); err != nil {
			return api.JobSpec{}, err
		}
	}
	if err := j.finish(); err != nil {
		return api.JobSpec{}, err
	}
	j.g.Command = cmd
	j.spec.Groups = []api.TaskGroupSpec{j.g}
	return j.spec, nil
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

func (j *sbatchJob) apply(words []string, line int) error {
	for i := 0; i < len(words); i++ {
		w := words[i]
		var d *directive
		var name, val string
		hasVal := false
		switch {
		case strings.HasPrefix(w, "--") && len(w) > 2:
			name, val, hasVal = strings.Cut(w[2:], "=")
			if msg, ok := unsupported[name]; ok {
				return &ParseError{Line: line, Field: "--" + name, Message: msg}
			}
			d = findLong(name)
			name = "--" + name
		case strings.HasPrefix(w, "-") && len(w) > 1 && w[1] != '-':
			if long, ok := unsupportedShort[w[1]]; ok {
				return &ParseError{Line: line, Field: "-" + w[1:2], Message: unsupported[long]}
			}
			d = findShort(w[1])
			name = "-" + w[1:2]
			if len(w) > 2 {
				// "-n4"; "-n=4" is read as "4" too, though getopt would not
				val, hasVal = strings.TrimPrefix(w[2:], "="), true
			}
		default:
			return &ParseError{Line: line, Message: fmt.Sprintf("unexpected %q: a directive line holds options such as --time=1:00", w)}
		}
		if d == nil {
			return &ParseError{Line: line, Field: name, Message: "unknown directive; supported are " + supportedList()}
		}
		switch d.arg {
		case noArg:
			if hasVal {
				return &ParseError{Line: line, Field: name, Message: "takes no value"}
			}
		case requiredArg:
			if !hasVal {
				if i+1 >= len(words) {
					return &ParseError{Line: line, Field: name, Message: "needs a value"}
				}
				i++
				val = words[i]
			}
		}
		if err := d.apply(j, val, line); err != nil {
			return &ParseError{Line: line, Field: name, Message: err.Error(), Err: err}
		}
	}
	return nil
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

// finish resolves the directives that depend on others.
func (j *sbatchJob) finish() error {
	tasks := j.g.Count
	if tasks == 0 {
		tasks = DefaultCount
	}
	switch {
	case j.memLine > 0 && j.memCPULine > 0:
		return &ParseError{Line: max(j.memLine, j.memCPULine), Field: "--mem-per-cpu", Message: "cannot be used together with --mem"}
	case j.memLine > 0:
		j.g.Resources.MemoryBytes = j.mem
	case j.memCPULine > 0:
		milli := j.g.Resources.MilliCPU
		if milli == 0 {
			milli = DefaultMilliCPU
		}
		// memory per CPU × CPUs per task, rounded up to a byte
		n := new(big.Int).Mul(big.NewInt(j.memPerCPU), big.NewInt(milli))
		n.Add(n, big.NewInt(999))
		n.Quo(n, big.NewInt(1000))
		if !n.IsInt64() {
			return &ParseError{Line: j.memCPULine, Field: "--mem-per-cpu", Message: "memory per task is too large"}
		}
		j.g.Resources.MemoryBytes = n.Int64()
	}
	switch {
	case j.gpusLine > 0 && j.perTaskLine > 0:
		return &ParseError{Line: max(j.gpusLine, j.perTaskLine), Field: "--gpus", Message: "cannot be used together with --gpus-per-task or --gres"}
	case j.gpusLine > 0:
		if j.gpus%int64(tasks) != 0 {
			return &ParseError{Line: j.gpusLine, Field: "--gpus", Message: fmt.Sprintf("%d GPUs cannot be shared evenly by %d tasks; every task gets the same number (use --gpus-per-task)", j.gpus, tasks)}
		}
		j.g.Resources.GPUs = j.gpus / int64(tasks)
	case j.perTaskLine > 0:
		j.g.Resources.GPUs = j.gpusPerTask
	}
	return nil
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
