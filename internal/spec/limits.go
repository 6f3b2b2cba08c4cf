package spec

import (
	"strings"
	"time"
)

// Limits on a job spec, enforced by Validate. docs/jobspec.md lists them for
// users; keep the two in step.
const (
	MaxNameLen           = 128 // job name, in characters
	MaxShortNameLen      = 63  // queue, group and custom resource names
	MinPriority          = -1000000
	MaxPriority          = 1000000
	MaxWalltime          = 365 * 24 * time.Hour
	MaxRetriesLimit      = 100     // max_retries
	MaxGroups            = 64      // task groups per job
	MaxTasksPerGroup     = 100000  // count of one group
	MaxTasksPerJob       = 100000  // sum of counts over all groups
	MaxMilliCPU          = 4096000 // per task: 4096 cores
	MaxMemoryBytes       = 64 << 40
	MaxGPUs              = 1024 // per task
	MaxScratchBytes      = 64 << 40
	MaxCustomValue       = 1000000000 // per custom resource, per task
	MaxLabelLen          = 253        // constraint keys and values
	MaxOwnerLen          = 64
	MaxIdempotencyKeyLen = 128
	// Job arrays: at most model.MaxArraySize (10,000) elements per
	// submission, indices from 0 to MaxArrayIndex, and the --array text at
	// most MaxArrayText characters.
	MaxArrayIndex = 9_999_999
	MaxArrayText  = 10000
	// MaxDependencies bounds the jobs a job names as dependencies (an
	// array's ID counts once, however many elements it has).
	MaxDependencies = 100
	// MaxArgBytes is the longest single command argument. The kernel refuses
	// to exec an argument of MAX_ARG_STRLEN (128 KiB) bytes or more, because
	// it counts the terminating NUL, so this is one byte under 128 KiB.
	MaxArgBytes = 128<<10 - 1
	// MaxSpecBytes bounds the whole spec, encoded as JSON. It keeps one
	// submission from bloating the replicated log and every snapshot.
	MaxSpecBytes = 1 << 20
)

// Defaults filled in by Normalize.
const (
	DefaultGroupName = "main" // the name of a job's only group when it has none
	DefaultMilliCPU  = 1000   // one core per task
	DefaultCount     = 1
)

// builtinResources cannot be used as custom resource names: they would read
// as the built-in dimensions in reasons such as "short of gpu".
var builtinResources = map[string]bool{
	"cpu": true, "cpus": true, "millicpu": true,
	"memory": true, "mem": true, "memory_bytes": true,
	"gpu": true, "gpus": true,
	"scratch": true, "scratch_bytes": true,
}

// FieldError is one problem with one field of a job spec. Field is a JSON
// path into api.JobSpec ("groups[0].resources.gpus", `groups[1].env["A=B"]`);
// it is empty for problems with the spec as a whole.
type FieldError struct {
	Field   string
	Message string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// FieldErrors is every problem Validate found, in field order. errors.As
// finds the first one as a FieldError.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (es FieldErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
