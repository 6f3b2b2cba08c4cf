package spec

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// nameRE is the rule for queue, group and custom resource names: short,
// lower case, safe in paths, URLs, labels and shell words.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`) // length checked by validName: a bounded repetition compiles slowly at every process start

// validName applies nameRE and the length limit.
func validName(s string) bool { return len(s) <= MaxShortNameLen && nameRE.MatchString(s) }

// notUTF8 explains why bytes that a process could take are refused: the spec
// travels as JSON, which would silently replace them.
const notUTF8 = "must be valid UTF-8 (JSON cannot carry other bytes)"

const nameRule = "must be 1-63 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit"

// Normalize fills in the defaults of a spec, in place:
//
//   - queue: model.DefaultQueue ("default")
//   - each group's count: 1; each task's CPU: 1 core (1000 millicores)
//   - the name of a job's only group: "main"
//   - the job's name: the base name of the first group's program
//     ("python" for ["/usr/bin/python", "train.py"])
//   - empty env, constraint and custom-resource maps become nil
//
// It never changes a value the user set, so Validate still sees and reports
// every bad one. Memory, GPUs, scratch and walltime default to zero: none
// requested, no limit.
func Normalize(s *api.JobSpec) {
	if s.Queue == "" {
		s.Queue = model.DefaultQueue
	}
	if len(s.Groups) == 1 && s.Groups[0].Name == "" {
		s.Groups[0].Name = DefaultGroupName
	}
	for i := range s.Groups {
		g := &s.Groups[i]
		if g.Count == 0 {
			g.Count = DefaultCount
		}
		if g.Resources.MilliCPU == 0 {
			g.Resources.MilliCPU = DefaultMilliCPU
		}
		if len(g.Env) == 0 {
			g.Env = nil
		}
		if len(g.Constraints) == 0 {
			g.Constraints = nil
		}
		if len(g.Resources.Custom) == 0 {
			g.Resources.Custom = nil
		}
	}
	if s.Name == "" && len(s.Groups) > 0 && len(s.Groups[0].Command) > 0 {
		s.Name = defaultJobName(s.Groups[0].Command[0])
	}
}

// defaultJobName derives a name from a program path, keeping only what would
// pass Validate so a default never causes an error of its own.
func defaultJobName(prog string) string {
	base := path.Base(prog)
	if base == "." || base == "/" || !utf8.ValidString(base) {
		return ""
	}
	var b strings.Builder
	n := 0
	for _, r := range base {
		if n == MaxNameLen {
			break
		}
		if unicode.IsPrint(r) {
			b.WriteRune(r)
			n++
		}
	}
	return b.String()
}

// Validate checks a spec against every limit and returns all problems as
// FieldErrors, or nil. Call Normalize first: Validate does not apply
// defaults, so an unnormalized spec with no queue fails.
func Validate(s *api.JobSpec) error {
	var v validator

	if n := utf8.RuneCountInString(s.Name); n > MaxNameLen {
		v.add("name", "must be at most %d characters; got %d", MaxNameLen, n)
	} else if !printable(s.Name) {
		v.add("name", "must be printable text (no control characters or invalid UTF-8)")
	}
	v.name("queue", s.Queue)
	if s.Priority < MinPriority || s.Priority > MaxPriority {
		v.add("priority", "must be between %d and %d; got %d", MinPriority, MaxPriority, s.Priority)
	}
	if w := time.Duration(s.Walltime); w < 0 {
		v.add("walltime", "must not be negative; got %s", w)
	} else if w > MaxWalltime {
		v.add("walltime", "must be at most %s (365 days); got %s", MaxWalltime, w)
	}
	if s.MaxRetries < 0 || s.MaxRetries > MaxRetriesLimit {
		v.add("max_retries", "must be between 0 and %d; got %d", MaxRetriesLimit, s.MaxRetries)
	}
	if n := utf8.RuneCountInString(s.Owner); n > MaxOwnerLen {
		v.add("owner", "must be at most %d characters; got %d", MaxOwnerLen, n)
	} else if !printable(s.Owner) || strings.ContainsFunc(s.Owner, unicode.IsSpace) {
		v.add("owner", "must be printable text without spaces")
	}
	if n := utf8.RuneCountInString(s.IdempotencyKey); n > MaxIdempotencyKeyLen {
		v.add("idempotency_key", "must be at most %d characters; got %d", MaxIdempotencyKeyLen, n)
	} else if !printable(s.IdempotencyKey) {
		v.add("idempotency_key", "must be printable text")
	}

	if s.Array != "" {
		if _, err := ParseArray(s.Array); err != nil {
			v.add("array", "%v", err)
		}
	}
	if len(s.Dependencies) > MaxDependencies {
		v.add("dependencies", "names %d jobs; at most %d are allowed", len(s.Dependencies), MaxDependencies)
	} else {
		for i, d := range s.Dependencies {
			p := fmt.Sprintf("dependencies[%d]", i)
			if err := checkDependencyType(d.Type); err != nil {
				v.add(p+".type", "%v", err)
			}
			if _, err := api.ParseJobRef(d.Job); err != nil {
				v.add(p+".job", "%v", err)
			}
		}
	}
	if s.Topology != "" {
		if msg := labelProblem(s.Topology); msg != "" {
			v.add("topology", "the node label key %s", msg)
		}
	}
	switch s.Placement {
	case "", model.PlacementPack, model.PlacementSpread:
	default:
		v.add("placement", "must be %q or %q; got %q", model.PlacementPack, model.PlacementSpread, s.Placement)
	}

	switch n := len(s.Groups); {
	case n == 0:
		v.add("groups", "a job needs at least one task group")
	case n > MaxGroups:
		v.add("groups", "must have at most %d task groups; got %d", MaxGroups, n)
	default:
		seen := make(map[string]int, n)
		tasks := 0
		for i := range s.Groups {
			g := &s.Groups[i]
			p := fmt.Sprintf("groups[%d]", i)
			if g.Name == "" && n > 1 {
				v.add(p+".name", "required when a job has more than one group")
			} else {
				v.name(p+".name", g.Name)
			}
			if first, dup := seen[g.Name]; dup && g.Name != "" {
				v.add(p+".name", "%q is already the name of groups[%d]", g.Name, first)
			} else {
				seen[g.Name] = i
			}
			if g.Count < 1 || g.Count > MaxTasksPerGroup {
				v.add(p+".count", "must be between 1 and %d; got %d", MaxTasksPerGroup, g.Count)
			} else {
				tasks += g.Count
			}
			v.group(p, g)
		}
		if tasks > MaxTasksPerJob {
			v.add("groups", "the job has %d tasks; at most %d are allowed per job", tasks, MaxTasksPerJob)
		}
		if s.MinTasks < 0 || s.MinTasks > tasks {
			v.add("min_tasks", "must be between 1 and the job's task count (%d), or 0 for all; got %d", tasks, s.MinTasks)
		}
	}

	// The size check comes last and only when the rest passed: a spec that
	// is too big usually is so because of a field already reported.
	if len(v.errs) == 0 {
		if b, err := json.Marshal(s); err != nil {
			v.add("", "cannot be encoded: %v", err)
		} else if len(b) > MaxSpecBytes {
			v.add("", "the job spec is %s encoded as JSON; the limit is %s",
				model.FormatBytes(int64(len(b))), model.FormatBytes(MaxSpecBytes))
		}
	}
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

type validator struct{ errs FieldErrors }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// name checks a queue, group or custom resource name.
func (v *validator) name(field, s string) {
	switch {
	case s == "":
		v.add(field, "required")
	case !validName(s):
		v.add(field, "%s; got %q", nameRule, s)
	}
}

func (v *validator) group(p string, g *api.TaskGroupSpec) {
	r := &g.Resources
	if r.MilliCPU < 1 || r.MilliCPU > MaxMilliCPU {
		v.add(p+".resources.millicpu", "must be between 1 and %d (4096 cores); got %d", MaxMilliCPU, r.MilliCPU)
	}
	v.bytes(p+".resources.memory_bytes", r.MemoryBytes, MaxMemoryBytes)
	if r.GPUs < 0 || r.GPUs > MaxGPUs {
		v.add(p+".resources.gpus", "must be between 0 and %d; got %d", MaxGPUs, r.GPUs)
	}
	v.bytes(p+".resources.scratch_bytes", r.ScratchBytes, MaxScratchBytes)
	for _, k := range sortedKeys(r.Custom) {
		f := fmt.Sprintf("%s.resources.custom[%q]", p, k)
		switch {
		case !validName(k):
			v.add(f, "resource name %s", nameRule)
		case builtinResources[k]:
			v.add(f, "%q is a built-in resource; use its own field", k)
		}
		if val := r.Custom[k]; val < 0 || val > MaxCustomValue {
			v.add(f, "must be between 0 and %d; got %d", MaxCustomValue, val)
		}
	}

	if len(g.Command) == 0 {
		v.add(p+".command", "required: the program to run and its arguments")
	}
	for i, a := range g.Command {
		f := fmt.Sprintf("%s.command[%d]", p, i)
		switch {
		case i == 0 && a == "":
			v.add(f, "the program must not be empty")
		case len(a) > MaxArgBytes:
			v.add(f, "is %d bytes; an argument may be at most %d bytes", len(a), MaxArgBytes)
		case strings.IndexByte(a, 0) >= 0:
			v.add(f, "must not contain NUL bytes")
		case !utf8.ValidString(a):
			v.add(f, notUTF8)
		}
	}

	for _, k := range sortedKeys(g.Env) {
		f := fmt.Sprintf("%s.env[%q]", p, k)
		switch {
		case k == "":
			v.add(f, "variable name must not be empty")
		case strings.ContainsAny(k, "=\x00"):
			v.add(f, "variable name must not contain '=' or NUL")
		case !utf8.ValidString(k):
			v.add(f, "variable name "+notUTF8)
		}
		switch val := g.Env[k]; {
		case strings.IndexByte(val, 0) >= 0:
			v.add(f, "value must not contain NUL bytes")
		case !utf8.ValidString(val):
			v.add(f, "value "+notUTF8)
		}
	}

	if g.WorkDir != "" {
		switch {
		case !path.IsAbs(g.WorkDir):
			v.add(p+".workdir", "must be an absolute path; got %q", g.WorkDir)
		case strings.IndexByte(g.WorkDir, 0) >= 0:
			v.add(p+".workdir", "must not contain NUL bytes")
		case !utf8.ValidString(g.WorkDir):
			v.add(p+".workdir", notUTF8)
		}
	}

	for _, k := range sortedKeys(g.Constraints) {
		f := fmt.Sprintf("%s.constraints[%q]", p, k)
		if k == "" {
			v.add(f, "label name must not be empty")
		} else if msg := labelProblem(k); msg != "" {
			v.add(f, "label name %s", msg)
		}
		if msg := labelProblem(g.Constraints[k]); msg != "" {
			v.add(f, "value %s", msg)
		}
	}
}

func (v *validator) bytes(field string, n, max int64) {
	if n < 0 || n > max {
		got := strconv.FormatInt(n, 10)
		if n > max {
			got += " (" + model.FormatBytes(n) + ")"
		}
		v.add(field, "must be between 0 and %d (%s); got %s", max, model.FormatBytes(max), got)
	}
}

// labelProblem says what is wrong with a constraint key or value, or "".
// Labels are matched against node labels written "key=value" and listed
// comma-separated on command lines, so '=', ',' and spaces are out.
func labelProblem(s string) string {
	switch {
	case len(s) > MaxLabelLen:
		return fmt.Sprintf("must be at most %d bytes; got %d", MaxLabelLen, len(s))
	case !printable(s) || strings.ContainsFunc(s, unicode.IsSpace):
		return "must be printable text without spaces"
	case strings.ContainsAny(s, "=,"):
		return fmt.Sprintf("must not contain '=' or ','; got %q", s)
	}
	return ""
}

// printable reports whether s is valid UTF-8 made only of printable
// characters (spaces included).
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ToModel turns a validated spec into the job it describes: the fields a user
// chooses. The server sets ID, owner (if it decides who submitted), state,
// times and indexes, resolves the dependencies (they name jobs as people
// write them, see api.JobRef) and expands the array (see ParseArray). The
// result shares no maps or slices with s.
func ToModel(s *api.JobSpec) model.Job {
	j := model.Job{
		Name:           s.Name,
		Owner:          s.Owner,
		Queue:          s.Queue,
		Priority:       s.Priority,
		Walltime:       time.Duration(s.Walltime),
		MaxRetries:     s.MaxRetries,
		IdempotencyKey: s.IdempotencyKey,
		MinTasks:       s.MinTasks,
		Topology:       s.Topology,
		Placement:      s.Placement,
		Groups:         make([]model.TaskGroup, len(s.Groups)),
	}
	for i, g := range s.Groups {
		j.Groups[i] = model.TaskGroup{
			Name:  g.Name,
			Count: g.Count,
			Resources: model.Resources{
				MilliCPU:     g.Resources.MilliCPU,
				MemoryBytes:  g.Resources.MemoryBytes,
				GPUs:         g.Resources.GPUs,
				ScratchBytes: g.Resources.ScratchBytes,
				Custom:       copyMap(g.Resources.Custom),
			},
			Command:     append([]string(nil), g.Command...),
			Env:         copyMap(g.Env),
			WorkDir:     g.WorkDir,
			Constraints: copyMap(g.Constraints),
		}
	}
	return j
}

func copyMap[V any](m map[string]V) map[string]V {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
