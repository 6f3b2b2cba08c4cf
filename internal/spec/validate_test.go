package spec

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// goodSpec is a normalized spec that passes Validate; cases change one thing.
func goodSpec() api.JobSpec {
	return api.JobSpec{
		Name:     "train",
		Queue:    "default",
		Priority: 10,
		Walltime: api.Duration(2 * time.Hour),
		Groups: []api.TaskGroupSpec{{
			Name:        "main",
			Count:       4,
			Resources:   api.Resources{MilliCPU: 2000, MemoryBytes: 4 << 30, GPUs: 1, ScratchBytes: 10 << 30, Custom: map[string]int64{"license.matlab": 1}},
			Command:     []string{"python", "train.py"},
			Env:         map[string]string{"EPOCHS": "3"},
			WorkDir:     "/tmp",
			Constraints: map[string]string{"pool": "gpu"},
		}},
	}
}

func TestValidateAcceptsGoodSpecs(t *testing.T) {
	cases := map[string]func(s *api.JobSpec){
		"as built":                 func(s *api.JobSpec) {},
		"limits exactly":           func(s *api.JobSpec) { atLimits(s) },
		"lowest priority":          func(s *api.JobSpec) { s.Priority = MinPriority },
		"no walltime":              func(s *api.JobSpec) { s.Walltime = 0 },
		"empty name":               func(s *api.JobSpec) { s.Name = "" },
		"unicode name":             func(s *api.JobSpec) { s.Name = "학습 run #3" },
		"128-character name":       func(s *api.JobSpec) { s.Name = strings.Repeat("가", MaxNameLen) },
		"empty argument":           func(s *api.JobSpec) { s.Groups[0].Command = []string{"echo", ""} },
		"empty env value":          func(s *api.JobSpec) { s.Groups[0].Env = map[string]string{"A": ""} },
		"env name with a dot":      func(s *api.JobSpec) { s.Groups[0].Env = map[string]string{"java.opts": "x"} },
		"empty constraint value":   func(s *api.JobSpec) { s.Groups[0].Constraints = map[string]string{"ssd": ""} },
		"zero custom amount":       func(s *api.JobSpec) { s.Groups[0].Resources.Custom = map[string]int64{"fpga": 0} },
		"two named groups":         func(s *api.JobSpec) { s.Groups = append(s.Groups, group("worker", 3)) },
		"owner and key":            func(s *api.JobSpec) { s.Owner = "alice"; s.IdempotencyKey = "c0ffee-1" },
		"queue with dots and dash": func(s *api.JobSpec) { s.Queue = "team-a.gpu_1" },
		"one-character queue":      func(s *api.JobSpec) { s.Queue = "q" },
		"63-character queue":       func(s *api.JobSpec) { s.Queue = strings.Repeat("q", 63) },
		"array and dependencies": func(s *api.JobSpec) {
			s.Array = "1-1000%50"
			s.Dependencies = []api.DependencySpec{{Type: "afterok", Job: "12"}, {Type: "afternotok", Job: "13_0"}}
		},
		"gang options":  func(s *api.JobSpec) { s.MinTasks, s.Topology, s.Placement = 2, "rack", "spread" },
		"min_tasks all": func(s *api.JobSpec) { s.MinTasks = 4 },
		"pack":          func(s *api.JobSpec) { s.Placement = "pack" },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			s := goodSpec()
			change(&s)
			if err := Validate(&s); err != nil {
				t.Fatalf("Validate: %v; want nil", err)
			}
		})
	}
}

func group(name string, count int) api.TaskGroupSpec {
	return api.TaskGroupSpec{Name: name, Count: count, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"true"}}
}

// atLimits sets every bounded value to its largest allowed value.
func atLimits(s *api.JobSpec) {
	s.Name = strings.Repeat("n", MaxNameLen)
	s.Priority = MaxPriority
	s.Walltime = api.Duration(MaxWalltime)
	s.MaxRetries = MaxRetriesLimit
	s.Owner = strings.Repeat("o", MaxOwnerLen)
	s.IdempotencyKey = strings.Repeat("k", MaxIdempotencyKeyLen)
	g := &s.Groups[0]
	g.Count = MaxTasksPerGroup
	g.Resources = api.Resources{MilliCPU: MaxMilliCPU, MemoryBytes: MaxMemoryBytes, GPUs: MaxGPUs, ScratchBytes: MaxScratchBytes, Custom: map[string]int64{"fpga": MaxCustomValue}}
	g.Constraints = map[string]string{strings.Repeat("k", MaxLabelLen): strings.Repeat("v", MaxLabelLen)}
	g.Command = []string{"sh", "-c", strings.Repeat("x", MaxArgBytes)}
	s.MinTasks = MaxTasksPerGroup
	s.Topology = strings.Repeat("t", MaxLabelLen)
	s.Array = fmt.Sprintf("%d-%d%%%d", MaxArrayIndex-model.MaxArraySize+1, MaxArrayIndex, model.MaxArraySize)
	s.Dependencies = nil
	for i := range MaxDependencies {
		s.Dependencies = append(s.Dependencies, api.DependencySpec{Type: "afterany", Job: fmt.Sprintf("%d_%d", i+1, i)})
	}
}

func TestValidateReportsFieldAndRule(t *testing.T) {
	cases := []struct {
		name   string
		change func(s *api.JobSpec)
		want   FieldErrors
	}{
		{"array too big", func(s *api.JobSpec) { s.Array = "0-10000" },
			FieldErrors{{"array", `"0-10000" has more than 10000 elements; at most 10000 are allowed per submission`}}},
		{"array throttle 0", func(s *api.JobSpec) { s.Array = "0-9%0" },
			FieldErrors{{"array", "throttle %0: must be at least 1 (the most elements that run at once)"}}},
		{"too many dependencies", func(s *api.JobSpec) {
			for range MaxDependencies + 1 {
				s.Dependencies = append(s.Dependencies, api.DependencySpec{Type: "afterok", Job: "1"})
			}
		}, FieldErrors{{"dependencies", "names 101 jobs; at most 100 are allowed"}}},
		{"bad dependency", func(s *api.JobSpec) { s.Dependencies = []api.DependencySpec{{Type: "before", Job: "0"}} },
			FieldErrors{
				{"dependencies[0].type", `unknown dependency type "before"; want afterok, afterany, afternotok`},
				{"dependencies[0].job", `invalid job ID "0": want a positive number like 12, or an array element like 12_3`},
			}},
		{"min_tasks above the task count", func(s *api.JobSpec) { s.MinTasks = 5 },
			FieldErrors{{"min_tasks", "must be between 1 and the job's task count (4), or 0 for all; got 5"}}},
		{"negative min_tasks", func(s *api.JobSpec) { s.MinTasks = -1 },
			FieldErrors{{"min_tasks", "must be between 1 and the job's task count (4), or 0 for all; got -1"}}},
		{"topology with =", func(s *api.JobSpec) { s.Topology = "rack=r1" },
			FieldErrors{{"topology", `the node label key must not contain '=' or ','; got "rack=r1"`}}},
		{"unknown placement", func(s *api.JobSpec) { s.Placement = "scatter" },
			FieldErrors{{"placement", `must be "pack" or "spread"; got "scatter"`}}},
		{"name too long", func(s *api.JobSpec) { s.Name = strings.Repeat("n", 129) },
			FieldErrors{{"name", "must be at most 128 characters; got 129"}}},
		{"name with a newline", func(s *api.JobSpec) { s.Name = "a\nb" },
			FieldErrors{{"name", "must be printable text (no control characters or invalid UTF-8)"}}},
		{"name not UTF-8", func(s *api.JobSpec) { s.Name = "\xff" },
			FieldErrors{{"name", "must be printable text (no control characters or invalid UTF-8)"}}},
		{"no queue", func(s *api.JobSpec) { s.Queue = "" },
			FieldErrors{{"queue", "required"}}},
		{"queue in capitals", func(s *api.JobSpec) { s.Queue = "GPU" },
			FieldErrors{{"queue", `must be 1-63 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit; got "GPU"`}}},
		{"queue starting with a dash", func(s *api.JobSpec) { s.Queue = "-q" },
			FieldErrors{{"queue", `must be 1-63 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit; got "-q"`}}},
		{"queue of 64 characters", func(s *api.JobSpec) { s.Queue = strings.Repeat("q", 64) },
			FieldErrors{{"queue", `must be 1-63 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit; got "` + strings.Repeat("q", 64) + `"`}}},
		{"priority too high", func(s *api.JobSpec) { s.Priority = 1000001 },
			FieldErrors{{"priority", "must be between -1000000 and 1000000; got 1000001"}}},
		{"priority too low", func(s *api.JobSpec) { s.Priority = -1000001 },
			FieldErrors{{"priority", "must be between -1000000 and 1000000; got -1000001"}}},
		{"negative walltime", func(s *api.JobSpec) { s.Walltime = api.Duration(-time.Second) },
			FieldErrors{{"walltime", "must not be negative; got -1s"}}},
		{"walltime over a year", func(s *api.JobSpec) { s.Walltime = api.Duration(MaxWalltime + time.Second) },
			FieldErrors{{"walltime", "must be at most 8760h0m0s (365 days); got 8760h0m1s"}}},
		{"retries too many", func(s *api.JobSpec) { s.MaxRetries = 101 },
			FieldErrors{{"max_retries", "must be between 0 and 100; got 101"}}},
		{"negative retries", func(s *api.JobSpec) { s.MaxRetries = -1 },
			FieldErrors{{"max_retries", "must be between 0 and 100; got -1"}}},
		{"owner with a space", func(s *api.JobSpec) { s.Owner = "a b" },
			FieldErrors{{"owner", "must be printable text without spaces"}}},
		{"owner too long", func(s *api.JobSpec) { s.Owner = strings.Repeat("o", 65) },
			FieldErrors{{"owner", "must be at most 64 characters; got 65"}}},
		{"idempotency key too long", func(s *api.JobSpec) { s.IdempotencyKey = strings.Repeat("k", 129) },
			FieldErrors{{"idempotency_key", "must be at most 128 characters; got 129"}}},
		{"no groups", func(s *api.JobSpec) { s.Groups = nil },
			FieldErrors{{"groups", "a job needs at least one task group"}}},
		{"65 groups", func(s *api.JobSpec) {
			s.Groups = nil
			for i := range 65 {
				s.Groups = append(s.Groups, group("g"+strings.Repeat("x", i), 1))
			}
		}, FieldErrors{{"groups", "must have at most 64 task groups; got 65"}}},
		{"unnamed second group", func(s *api.JobSpec) { s.Groups = append(s.Groups, group("", 1)) },
			FieldErrors{{"groups[1].name", "required when a job has more than one group"}}},
		{"bad group name", func(s *api.JobSpec) { s.Groups[0].Name = "Main" },
			FieldErrors{{"groups[0].name", `must be 1-63 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit; got "Main"`}}},
		{"duplicate group name", func(s *api.JobSpec) { s.Groups = append(s.Groups, group("w", 1), group("main", 1)) },
			FieldErrors{{"groups[2].name", `"main" is already the name of groups[0]`}}},
		{"count zero", func(s *api.JobSpec) { s.Groups[0].Count = 0 },
			FieldErrors{{"groups[0].count", "must be between 1 and 100000; got 0"}}},
		{"count too many", func(s *api.JobSpec) { s.Groups[0].Count = 100001 },
			FieldErrors{{"groups[0].count", "must be between 1 and 100000; got 100001"}}},
		{"too many tasks in the job", func(s *api.JobSpec) { s.Groups = []api.TaskGroupSpec{group("a", 60000), group("b", 40001)} },
			FieldErrors{{"groups", "the job has 100001 tasks; at most 100000 are allowed per job"}}},
		{"zero cpu", func(s *api.JobSpec) { s.Groups[0].Resources.MilliCPU = 0 },
			FieldErrors{{"groups[0].resources.millicpu", "must be between 1 and 4096000 (4096 cores); got 0"}}},
		{"negative cpu", func(s *api.JobSpec) { s.Groups[0].Resources.MilliCPU = -1 },
			FieldErrors{{"groups[0].resources.millicpu", "must be between 1 and 4096000 (4096 cores); got -1"}}},
		{"too much cpu", func(s *api.JobSpec) { s.Groups[0].Resources.MilliCPU = MaxMilliCPU + 1 },
			FieldErrors{{"groups[0].resources.millicpu", "must be between 1 and 4096000 (4096 cores); got 4096001"}}},
		{"negative memory", func(s *api.JobSpec) { s.Groups[0].Resources.MemoryBytes = -1 },
			FieldErrors{{"groups[0].resources.memory_bytes", "must be between 0 and 70368744177664 (64TiB); got -1"}}},
		{"too much memory", func(s *api.JobSpec) { s.Groups[0].Resources.MemoryBytes = 100 << 40 },
			FieldErrors{{"groups[0].resources.memory_bytes", "must be between 0 and 70368744177664 (64TiB); got 109951162777600 (100TiB)"}}},
		{"too many gpus", func(s *api.JobSpec) { s.Groups[0].Resources.GPUs = 1025 },
			FieldErrors{{"groups[0].resources.gpus", "must be between 0 and 1024; got 1025"}}},
		{"negative gpus", func(s *api.JobSpec) { s.Groups[0].Resources.GPUs = -1 },
			FieldErrors{{"groups[0].resources.gpus", "must be between 0 and 1024; got -1"}}},
		{"too much scratch", func(s *api.JobSpec) { s.Groups[0].Resources.ScratchBytes = MaxScratchBytes + 1 },
			FieldErrors{{"groups[0].resources.scratch_bytes", "must be between 0 and 70368744177664 (64TiB); got 70368744177665 (64.0TiB)"}}},
		{"custom resource named like a built-in", func(s *api.JobSpec) { s.Groups[0].Resources.Custom = map[string]int64{"gpu": 1} },
			FieldErrors{{`groups[0].resources.custom["gpu"]`, `"gpu" is a built-in resource; use its own field`}}},
		{"custom resource with a bad name and amount", func(s *api.JobSpec) { s.Groups[0].Resources.Custom = map[string]int64{"Big FPGA": -1} },
			FieldErrors{
				{`groups[0].resources.custom["Big FPGA"]`, "resource name must be 1-63 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit"},
				{`groups[0].resources.custom["Big FPGA"]`, "must be between 0 and 1000000000; got -1"},
			}},
		{"custom amount too large", func(s *api.JobSpec) { s.Groups[0].Resources.Custom = map[string]int64{"fpga": MaxCustomValue + 1} },
			FieldErrors{{`groups[0].resources.custom["fpga"]`, "must be between 0 and 1000000000; got 1000000001"}}},
		{"no command", func(s *api.JobSpec) { s.Groups[0].Command = nil },
			FieldErrors{{"groups[0].command", "required: the program to run and its arguments"}}},
		{"empty program", func(s *api.JobSpec) { s.Groups[0].Command = []string{"", "x"} },
			FieldErrors{{"groups[0].command[0]", "the program must not be empty"}}},
		{"argument too long", func(s *api.JobSpec) { s.Groups[0].Command = []string{"sh", "-c", strings.Repeat("x", MaxArgBytes+1)} },
			FieldErrors{{"groups[0].command[2]", "is 131072 bytes; an argument may be at most 131071 bytes"}}},
		{"argument with NUL", func(s *api.JobSpec) { s.Groups[0].Command = []string{"echo", "a\x00b"} },
			FieldErrors{{"groups[0].command[1]", "must not contain NUL bytes"}}},
		{"argument not UTF-8", func(s *api.JobSpec) { s.Groups[0].Command = []string{"echo", "\xff"} },
			FieldErrors{{"groups[0].command[1]", "must be valid UTF-8 (JSON cannot carry other bytes)"}}},
		{"env name with =", func(s *api.JobSpec) { s.Groups[0].Env = map[string]string{"A=B": "c"} },
			FieldErrors{{`groups[0].env["A=B"]`, "variable name must not contain '=' or NUL"}}},
		{"empty env name", func(s *api.JobSpec) { s.Groups[0].Env = map[string]string{"": "c"} },
			FieldErrors{{`groups[0].env[""]`, "variable name must not be empty"}}},
		{"env value with NUL", func(s *api.JobSpec) { s.Groups[0].Env = map[string]string{"A": "\x00"} },
			FieldErrors{{`groups[0].env["A"]`, "value must not contain NUL bytes"}}},
		{"relative workdir", func(s *api.JobSpec) { s.Groups[0].WorkDir = "data" },
			FieldErrors{{"groups[0].workdir", `must be an absolute path; got "data"`}}},
		{"constraint key with =", func(s *api.JobSpec) { s.Groups[0].Constraints = map[string]string{"a=b": "c"} },
			FieldErrors{{`groups[0].constraints["a=b"]`, `label name must not contain '=' or ','; got "a=b"`}}},
		{"empty constraint key", func(s *api.JobSpec) { s.Groups[0].Constraints = map[string]string{"": "c"} },
			FieldErrors{{`groups[0].constraints[""]`, "label name must not be empty"}}},
		{"constraint value with a space", func(s *api.JobSpec) { s.Groups[0].Constraints = map[string]string{"pool": "a b"} },
			FieldErrors{{`groups[0].constraints["pool"]`, "value must be printable text without spaces"}}},
		{"constraint value too long", func(s *api.JobSpec) { s.Groups[0].Constraints = map[string]string{"pool": strings.Repeat("v", 254)} },
			FieldErrors{{`groups[0].constraints["pool"]`, "value must be at most 253 bytes; got 254"}}},
		{"spec over 1 MiB", func(s *api.JobSpec) {
			s.Groups[0].Command = []string{"sh"}
			for range 9 {
				s.Groups[0].Command = append(s.Groups[0].Command, strings.Repeat("x", MaxArgBytes))
			}
		}, FieldErrors{{"", "the job spec is 1.1MiB encoded as JSON; the limit is 1MiB"}}},
		{"every problem at once", func(s *api.JobSpec) {
			s.Queue = ""
			s.Priority = 2000000
			s.Groups[0].Count = -1
			s.Groups[0].Resources.GPUs = 2000
			s.Groups[0].Command = nil
		}, FieldErrors{
			{"queue", "required"},
			{"priority", "must be between -1000000 and 1000000; got 2000000"},
			{"groups[0].count", "must be between 1 and 100000; got -1"},
			{"groups[0].resources.gpus", "must be between 0 and 1024; got 2000"},
			{"groups[0].command", "required: the program to run and its arguments"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := goodSpec()
			tc.change(&s)
			err := Validate(&s)
			var got FieldErrors
			if !errors.As(err, &got) {
				t.Fatalf("Validate = %v; want FieldErrors", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FieldErrors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFieldErrorsMessage(t *testing.T) {
	s := goodSpec()
	s.Groups[0].Count = 0
	s.Groups[0].Resources.GPUs = -2
	err := Validate(&s)
	want := "groups[0].count: must be between 1 and 100000; got 0; groups[0].resources.gpus: must be between 0 and 1024; got -2"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate = %v; want %q", err, want)
	}
	// The HTTP layer picks the first problem's field for its error body.
	var fe FieldError
	if !errors.As(err, &fe) || fe.Field != "groups[0].count" {
		t.Errorf("errors.As(FieldError) = %+v; want the first problem, groups[0].count", fe)
	}
	if got := (FieldError{Message: "too big"}).Error(); got != "too big" {
		t.Errorf("FieldError without a field = %q; want %q", got, "too big")
	}
}

func TestNormalizeFillsDefaults(t *testing.T) {
	s := api.JobSpec{Groups: []api.TaskGroupSpec{{
		Command:     []string{"/usr/bin/python3", "train.py"},
		Env:         map[string]string{},
		Constraints: map[string]string{},
		Resources:   api.Resources{Custom: map[string]int64{}},
	}}}
	Normalize(&s)
	want := api.JobSpec{
		Name:  "python3",
		Queue: model.DefaultQueue,
		Groups: []api.TaskGroupSpec{{
			Name:      "main",
			Count:     1,
			Resources: api.Resources{MilliCPU: 1000},
			Command:   []string{"/usr/bin/python3", "train.py"},
		}},
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("Normalize (-want +got):\n%s", diff)
	}
	if err := Validate(&s); err != nil {
		t.Errorf("Validate after Normalize: %v", err)
	}
}

func TestNormalizeKeepsWhatUsersSet(t *testing.T) {
	s := goodSpec()
	s.Groups[0].Count = -3
	s.Groups[0].Resources.MilliCPU = -1
	s.Groups = append(s.Groups, api.TaskGroupSpec{Command: []string{"x"}})
	want := goodSpec()
	want.Groups[0].Count = -3
	want.Groups[0].Resources.MilliCPU = -1
	want.Groups = append(want.Groups, api.TaskGroupSpec{Count: 1, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"x"}})
	Normalize(&s)
	// With two groups the unnamed one stays unnamed, for Validate to report.
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("Normalize (-want +got):\n%s", diff)
	}
}

func TestNormalizeDefaultNameAlwaysValid(t *testing.T) {
	cases := map[string]string{
		"/":                      "",
		"":                       "",
		"a\x01b":                 "ab",
		strings.Repeat("x", 300): strings.Repeat("x", MaxNameLen),
		"/opt/bin/my tool":       "my tool",
		"\xff\xfe":               "",
	}
	for prog, want := range cases {
		s := api.JobSpec{Groups: []api.TaskGroupSpec{{Command: []string{prog}}}}
		Normalize(&s)
		if s.Name != want {
			t.Errorf("Normalize name from %q = %q; want %q", prog, s.Name, want)
		}
	}
}

func TestToModel(t *testing.T) {
	s := goodSpec()
	s.Owner = "alice"
	s.MaxRetries = 2
	s.IdempotencyKey = "k1"
	j := ToModel(&s)
	want := model.Job{
		Name: "train", Owner: "alice", Queue: "default", Priority: 10, Walltime: 2 * time.Hour,
		MaxRetries: 2, IdempotencyKey: "k1",
		Groups: []model.TaskGroup{{
			Name:        "main",
			Count:       4,
			Resources:   model.Resources{MilliCPU: 2000, MemoryBytes: 4 << 30, GPUs: 1, ScratchBytes: 10 << 30, Custom: map[string]int64{"license.matlab": 1}},
			Command:     []string{"python", "train.py"},
			Env:         map[string]string{"EPOCHS": "3"},
			WorkDir:     "/tmp",
			Constraints: map[string]string{"pool": "gpu"},
		}},
	}
	if diff := cmp.Diff(want, j); diff != "" {
		t.Errorf("ToModel (-want +got):\n%s", diff)
	}
	// The job must not share memory with the spec it came from.
	s.Groups[0].Command[0] = "changed"
	s.Groups[0].Env["EPOCHS"] = "changed"
	s.Groups[0].Constraints["pool"] = "changed"
	s.Groups[0].Resources.Custom["license.matlab"] = 9
	if diff := cmp.Diff(want, j); diff != "" {
		t.Errorf("ToModel result changed with its spec (-want +got):\n%s", diff)
	}
}
