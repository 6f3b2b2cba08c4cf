package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/durehq/dure/internal/api"
)

// Job files are read with go.yaml.in/yaml/v3 into its node tree, then walked
// by hand. The walk gives every error a line number and the file's own field
// names, treats every scalar as the text the user wrote (so "1:30:00" and
// "0.5" reach ParseWalltime and ParseCPU unchanged, with no YAML 1.1 number
// surprises), and rejects unknown and duplicate fields.

const (
	// MaxJobFileBytes bounds a job file before it is parsed.
	MaxJobFileBytes = 4 << 20
	// maxNodeVisits bounds the walk: YAML aliases can make a small file
	// expand to a huge one.
	maxNodeVisits = 1 << 21
)

// ParseError is a problem in a job file or an sbatch script. Line is
// 1-based (0 when unknown); Field is the field or directive as the user wrote
// it ("groups[1].cpus", "--time"), empty when none applies.
type ParseError struct {
	Line    int
	Field   string
	Message string
	Err     error // the underlying error, when there is one
}

func (e *ParseError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// Job-level fields, and fields of a task group. A group's fields may also be
// written at the top level for a job with a single group.
var (
	jobFields   = []string{"name", "queue", "priority", "time", "retries", "array", "dependency", "min_tasks", "topology", "placement", "groups"}
	groupFields = []string{"name", "tasks", "cpus", "memory", "gpus", "scratch", "custom", "constraints", "env", "workdir", "command", "script"}
)

// fieldHints answer unknown fields that users coming from the wire format,
// Slurm or Kubernetes are likely to write.
var fieldHints = map[string]string{
	"walltime": "time", "time_limit": "time", "timelimit": "time",
	"max_retries": "retries", "requeue": "retries", "retry": "retries",
	"count": "tasks", "ntasks": "tasks", "replicas": "tasks",
	"cpu": "cpus", "millicpu": "cpus", "cpus_per_task": "cpus", "cpus-per-task": "cpus",
	"mem": "memory", "memory_bytes": "memory",
	"gpu": "gpus", "scratch_bytes": "scratch", "tmp": "scratch",
	"partition": "queue", "cmd": "command", "args": "command",
	"environment": "env", "chdir": "workdir", "cwd": "workdir", "working_dir": "workdir", "workingdir": "workdir",
	"job_name": "name", "constraint": "constraints", "labels": "constraints", "resources": "custom",
	"dependencies": "dependency", "depends_on": "dependency", "after": "dependency", "afterok": "dependency",
	"min_count": "min_tasks", "mintasks": "min_tasks", "min-tasks": "min_tasks", "gang": "min_tasks",
	"spread": "placement", "pack": "placement", "distribution": "placement",
}

// ParseJobFile reads a job file: YAML, or JSON, which is YAML too. The format
// is documented in docs/jobspec.md. A file without groups: gives a job with
// one group, even when it names no command, so that a caller can still add
// one (dure submit job.yaml -- prog args). Errors carry line numbers.
//
// ParseJobFile checks syntax and types; call Normalize and Validate on the
// result (after any overrides) to check limits.
func ParseJobFile(data []byte) (api.JobSpec, error) {
	if len(data) > MaxJobFileBytes {
		return api.JobSpec{}, &ParseError{Message: fmt.Sprintf("the job file is %d bytes; at most %d are allowed", len(data), MaxJobFileBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return api.JobSpec{}, &ParseError{Message: "the job file is empty"}
		}
		return api.JobSpec{}, yamlError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return api.JobSpec{}, &ParseError{Line: next.Line, Message: "a job file holds one job; found a second YAML document"}
	case !errors.Is(err, io.EOF):
		return api.JobSpec{}, yamlError(err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return api.JobSpec{}, &ParseError{Message: "the job file is empty"}
	}
	p := &fileParser{}
	return p.job(doc.Content[0])
}

// yamlError turns the YAML library's syntax error into a ParseError,
// dropping its "yaml: " prefix (the line is already in its text).
func yamlError(err error) error {
	return &ParseError{Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
}

type fileParser struct{ visits int }

// entry is one field of a mapping, keyed by its text.
type entry struct {
	key  string
	line int // of the key
	val  *yaml.Node
}

// resolve follows an alias and counts the visit against the budget.
func (p *fileParser) resolve(n *yaml.Node) (*yaml.Node, error) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	p.visits++
	if p.visits > maxNodeVisits {
		return nil, &ParseError{Line: n.Line, Message: fmt.Sprintf("the job file expands to more than %d values (through YAML aliases?)", maxNodeVisits)}
	}
	return n, nil
}

// mapping returns the fields of a mapping node in file order. It resolves
// YAML merge keys ("<<: *defaults"; fields written out win over merged ones)
// and rejects fields written twice.
func (p *fileParser) mapping(n *yaml.Node, field, want string) ([]entry, error) {
	n, err := p.resolve(n)
	if err != nil {
		return nil, err
	}
	if n.Kind != yaml.MappingNode {
		return nil, &ParseError{Line: n.Line, Field: field, Message: fmt.Sprintf("want %s; got %s", want, describe(n))}
	}
	var own, merged []entry
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := p.resolve(n.Content[i])
		if err != nil {
			return nil, err
		}
		v := n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			m, err := p.merge(v, field, want)
			if err != nil {
				return nil, err
			}
			merged = append(merged, m...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			return nil, &ParseError{Line: k.Line, Field: field, Message: fmt.Sprintf("field names must be plain text; got %s", describe(k))}
		}
		if l, dup := firstLine[k.Value]; dup {
			return nil, &ParseError{Line: k.Line, Field: join(field, k.Value), Message: fmt.Sprintf("written twice (first on line %d)", l)}
		}
		firstLine[k.Value] = k.Line
		own = append(own, entry{key: k.Value, line: k.Line, val: v})
	}
	for _, e := range merged {
		if _, ok := firstLine[e.key]; !ok {
			firstLine[e.key] = e.line
			own = append(own, e)
		}
	}
	return own, nil
}

// merge reads the value of a "<<" key: one mapping or a list of them, the
// earlier ones winning.
func (p *fileParser) merge(v *yaml.Node, field, want string) ([]entry, error) {
	v, err := p.resolve(v)
	if err != nil {
		return nil, err
	}
	if v.Kind != yaml.SequenceNode {
		return p.mapping(v, field, want)
	}
	var out []entry
	seen := map[string]bool{}
	for _, item := range v.Content {
		es, err := p.mapping(item, field, want)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if !seen[e.key] {
				seen[e.key] = true
				out = append(out, e)
			}
		}
	}
	return out, nil
}

func (p *fileParser) job(root *yaml.Node) (api.JobSpec, error) {
	var s api.JobSpec
	entries, err := p.mapping(root, "", "a job: a mapping of fields such as name:, tasks: and command:")
	if err != nil {
		return s, err
	}
	var groupEntries []entry
	var groups *entry
	for i := range entries {
		e := &entries[i]
		if null, err := p.isNullEntry(e); err != nil {
			return s, err
		} else if null {
			continue // an empty value is the same as leaving the field out
		}
		switch e.key {
		case "name":
			s.Name, err = p.str(e.val, e.key)
		case "queue":
			s.Queue, err = p.str(e.val, e.key)
		case "priority":
			s.Priority, err = p.int(e.val, e.key)
		case "retries":
			s.MaxRetries, err = p.int(e.val, e.key)
		case "time":
			var text string
			if text, err = p.str(e.val, e.key); err == nil {
				var d time.Duration
				d, err = ParseWalltime(text)
				s.Walltime = api.Duration(d)
			}
		case "array":
			if s.Array, err = p.str(e.val, e.key); err == nil {
				_, err = ParseArray(s.Array)
			}
		case "dependency":
			s.Dependencies, err = p.dependencies(e.val, e.key)
		case "min_tasks":
			s.MinTasks, err = p.int(e.val, e.key)
		case "topology":
			s.Topology, err = p.str(e.val, e.key)
		case "placement":
			s.Placement, err = p.str(e.val, e.key)
		case "groups":
			groups = e
		default:
			if !contains(groupFields, e.key) {
				return s, unknownField(e, "", append(append([]string(nil), jobFields...), groupFields[1:]...))
			}
			groupEntries = append(groupEntries, *e)
		}
		if err != nil {
			return s, wrapField(err, e.val.Line, e.key)
		}
	}
	if groups == nil {
		g, err := p.group(groupEntries, "")
		if err != nil {
			return s, err
		}
		s.Groups = []api.TaskGroupSpec{g}
		return s, nil
	}
	if len(groupEntries) > 0 {
		e := groupEntries[0]
		return s, &ParseError{Line: e.line, Field: e.key, Message: fmt.Sprintf("cannot be used together with groups: (line %d); put it inside each group", groups.line)}
	}
	list, err := p.resolve(groups.val)
	if err != nil {
		return s, err
	}
	if list.Kind != yaml.SequenceNode {
		return s, &ParseError{Line: list.Line, Field: "groups", Message: "want a list of task groups (- name: …); got " + describe(list)}
	}
	s.Groups = make([]api.TaskGroupSpec, 0, len(list.Content))
	for i, item := range list.Content {
		field := fmt.Sprintf("groups[%d]", i)
		es, err := p.mapping(item, field, "a task group: a mapping of fields such as name:, tasks: and command:")
		if err != nil {
			return s, err
		}
		for _, e := range es {
			if contains(jobFields, e.key) && e.key != "name" {
				return s, &ParseError{Line: e.line, Field: join(field, e.key), Message: "is a field of the job, not of a group; write it at the top level"}
			}
		}
		g, err := p.group(es, field)
		if err != nil {
			return s, err
		}
		s.Groups = append(s.Groups, g)
	}
	return s, nil
}

// group reads a task group's fields; prefix is its path ("groups[1]"), or
// "" for the single-group shorthand at the top level.
func (p *fileParser) group(entries []entry, prefix string) (api.TaskGroupSpec, error) {
	var g api.TaskGroupSpec
	var command, script *entry
	for i := range entries {
		e := &entries[i]
		f := join(prefix, e.key)
		null, err := p.isNullEntry(e)
		if err != nil {
			return g, err
		}
		if null {
			continue
		}
		var text string
		switch e.key {
		case "name":
			g.Name, err = p.str(e.val, f)
		case "tasks":
			// 0 would read as "unset" and become the default of 1 task
			if g.Count, err = p.int(e.val, f); err == nil && g.Count < 1 {
				err = fmt.Errorf("must be at least 1; got %d", g.Count)
			}
		case "cpus":
			if text, err = p.str(e.val, f); err == nil {
				g.Resources.MilliCPU, err = ParseCPU(text)
			}
		case "memory":
			if text, err = p.str(e.val, f); err == nil {
				g.Resources.MemoryBytes, err = ParseSize(text)
			}
		case "scratch":
			if text, err = p.str(e.val, f); err == nil {
				g.Resources.ScratchBytes, err = ParseSize(text)
			}
		case "gpus":
			var n int
			n, err = p.int(e.val, f)
			g.Resources.GPUs = int64(n)
		case "custom":
			g.Resources.Custom, err = p.intMap(e.val, f)
		case "constraints":
			g.Constraints, err = p.strMap(e.val, f)
		case "env":
			g.Env, err = p.strMap(e.val, f)
		case "workdir":
			g.WorkDir, err = p.str(e.val, f)
		case "command":
			command = e
			g.Command, err = p.strList(e.val, f)
		case "script":
			script = e
			if text, err = p.str(e.val, f); err == nil {
				g.Command, err = scriptCommand(text)
			}
		default:
			return g, unknownField(e, prefix, groupFields)
		}
		if err != nil {
			return g, wrapField(err, e.val.Line, f)
		}
	}
	if command != nil && script != nil {
		return g, &ParseError{Line: script.line, Field: join(prefix, "script"), Message: fmt.Sprintf("cannot be used together with command: (line %d); a group runs one or the other", command.line)}
	}
	return g, nil
}

// wrapField gives an error from a value parser its line and field, keeping
// errors that already carry them.
func wrapField(err error, line int, field string) error {
	if err == nil {
		return nil
	}
	var pe *ParseError
	if errors.As(err, &pe) {
		return err
	}
	return &ParseError{Line: line, Field: field, Message: err.Error(), Err: err}
}

func (p *fileParser) isNullEntry(e *entry) (bool, error) {
	v, err := p.resolve(e.val)
	if err != nil {
		return false, err
	}
	e.val = v
	return isNull(v), nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// str reads a scalar as the text written in the file.
func (p *fileParser) str(n *yaml.Node, field string) (string, error) {
	n, err := p.resolve(n)
	if err != nil {
		return "", err
	}
	if n.Kind != yaml.ScalarNode {
		return "", &ParseError{Line: n.Line, Field: field, Message: "want a single value; got " + describe(n)}
	}
	if isNull(n) {
		return "", &ParseError{Line: n.Line, Field: field, Message: `want a value; got nothing (write "" for an empty string)`}
	}
	return n.Value, nil
}

func (p *fileParser) int(n *yaml.Node, field string) (int, error) {
	text, err := p.str(n, field)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil {
		return 0, &ParseError{Line: n.Line, Field: field, Message: fmt.Sprintf("want a whole number; got %q", text)}
	}
	return v, nil
}

func (p *fileParser) strList(n *yaml.Node, field string) ([]string, error) {
	n, err := p.resolve(n)
	if err != nil {
		return nil, err
	}
	if n.Kind != yaml.SequenceNode {
		msg := "want a list of strings, such as [\"python\", \"train.py\"]; got " + describe(n)
		if n.Kind == yaml.ScalarNode {
			msg += "; to run shell text, use script: instead"
		}
		return nil, &ParseError{Line: n.Line, Field: field, Message: msg}
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		s, err := p.str(item, fmt.Sprintf("%s[%d]", field, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// dependencies reads dependency: as one string in Slurm's syntax
// ("afterok:12:13,afterany:14") or a list of such strings.
func (p *fileParser) dependencies(n *yaml.Node, field string) ([]api.DependencySpec, error) {
	n, err := p.resolve(n)
	if err != nil {
		return nil, err
	}
	texts := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		texts = n.Content
	}
	var out []api.DependencySpec
	for i, item := range texts {
		f := field
		if n.Kind == yaml.SequenceNode {
			f = fmt.Sprintf("%s[%d]", field, i)
		}
		text, err := p.str(item, f)
		if err != nil {
			return nil, err
		}
		ds, err := ParseDependency(text)
		if err != nil {
			return nil, &ParseError{Line: item.Line, Field: f, Message: err.Error(), Err: err}
		}
		out = append(out, ds...)
	}
	if len(out) > MaxDependencies {
		return nil, &ParseError{Line: n.Line, Field: field, Message: fmt.Sprintf("names %d jobs; at most %d are allowed", len(out), MaxDependencies)}
	}
	return out, nil
}

func (p *fileParser) strMap(n *yaml.Node, field string) (map[string]string, error) {
	es, err := p.mapping(n, field, "a mapping of names to values")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(es))
	for _, e := range es {
		if out[e.key], err = p.str(e.val, join(field, e.key)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (p *fileParser) intMap(n *yaml.Node, field string) (map[string]int64, error) {
	es, err := p.mapping(n, field, "a mapping of resource names to amounts")
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(es))
	for _, e := range es {
		v, err := p.int(e.val, join(field, e.key))
		if err != nil {
			return nil, err
		}
		out[e.key] = int64(v)
	}
	return out, nil
}

func unknownField(e *entry, prefix string, known []string) error {
	msg := fmt.Sprintf("unknown field %q", e.key)
	if hint, ok := fieldHints[e.key]; ok {
		msg += fmt.Sprintf("; did you mean %q?", hint)
	} else {
		msg += "; known fields are " + strings.Join(known, ", ")
	}
	return &ParseError{Line: e.line, Field: prefix, Message: msg}
}

// describe names a node's kind for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
