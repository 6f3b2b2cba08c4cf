package exec

import (
	"fmt"
	"strings"
)

// maxIDLen keeps <Dir>/<ID> and the cgroup name within NAME_MAX.
const maxIDLen = 200

// maxMilliCPU (a million cores) keeps the quota arithmetic far from overflow.
const maxMilliCPU = 1 << 30

// reservedNames are the runner's own files in Dir, which no task may be named.
var reservedNames = map[string]bool{
	supervisorLog: true, socketFile: true, lockFile: true, journalFile: true, journalFile + ".tmp": true,
}

// validID reports whether id matches [A-Za-z0-9._-]+ and is a usable file name.
func validID(id string) error {
	if id == "" {
		return fmt.Errorf("exec: TaskSpec.ID: must not be empty")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("exec: TaskSpec.ID: must be at most %d characters, got %d", maxIDLen, len(id))
	}
	if id == "." || id == ".." || reservedNames[id] {
		return fmt.Errorf("exec: TaskSpec.ID: must not be %q", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("exec: TaskSpec.ID: must match [A-Za-z0-9._-]+, got %q", id)
		}
	}
	return nil
}

// validateSpec checks a TaskSpec; errors name the field and the rule.
func validateSpec(s TaskSpec) error {
	if err := validID(s.ID); err != nil {
		return err
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		return fmt.Errorf("exec: TaskSpec.Command: must name a program")
	}
	for i, a := range s.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("exec: TaskSpec.Command[%d]: must not contain a NUL byte", i)
		}
	}
	for i, e := range s.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return fmt.Errorf("exec: TaskSpec.Env[%d]: must be KEY=VALUE, got %q", i, e)
		}
		if strings.IndexByte(e, 0) >= 0 {
			return fmt.Errorf("exec: TaskSpec.Env[%d]: must not contain a NUL byte", i)
		}
	}
	if strings.IndexByte(s.WorkDir, 0) >= 0 {
		return fmt.Errorf("exec: TaskSpec.WorkDir: must not contain a NUL byte")
	}
	if s.MilliCPU < 0 {
		return fmt.Errorf("exec: TaskSpec.MilliCPU: must be >= 0, got %d", s.MilliCPU)
	}
	if s.MilliCPU > maxMilliCPU {
		return fmt.Errorf("exec: TaskSpec.MilliCPU: must be <= %d, got %d", maxMilliCPU, s.MilliCPU)
	}
	if s.MemoryBytes < 0 {
		return fmt.Errorf("exec: TaskSpec.MemoryBytes: must be >= 0, got %d", s.MemoryBytes)
	}
	for i, g := range s.GPUIndices {
		if g < 0 {
			return fmt.Errorf("exec: TaskSpec.GPUIndices[%d]: must be >= 0, got %d", i, g)
		}
	}
	if s.Walltime < 0 {
		return fmt.Errorf("exec: TaskSpec.Walltime: must be >= 0, got %s", s.Walltime)
	}
	if s.KillGrace < 0 {
		return fmt.Errorf("exec: TaskSpec.KillGrace: must be >= 0, got %s", s.KillGrace)
	}
	return nil
}
