package spec

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

func TestParseJobFileShorthand(t *testing.T) {
	file := `# a training job
name: train
queue: default
priority: 10
time: 2h            # walltime
retries: 2
tasks: 4
cpus: 2
memory: 4G
gpus: 1
scratch: 10G
custom: {license.matlab: 1}
constraints: {pool: gpu}
env: {EPOCHS: 3, DEBUG: yes}
workdir: /tmp
command: ["python", "train.py", --lr, 0.1]
`
	want := api.JobSpec{
		Name: "train", Queue: "default", Priority: 10, Walltime: api.Duration(2 * time.Hour), MaxRetries: 2,
		Groups: []api.TaskGroupSpec{{
			Count:       4,
			Resources:   api.Resources{MilliCPU: 2000, MemoryBytes: 4 << 30, GPUs: 1, ScratchBytes: 10 << 30, Custom: map[string]int64{"license.matlab": 1}},
			Constraints: map[string]string{"pool": "gpu"},
			Env:         map[string]string{"EPOCHS": "3", "DEBUG": "yes"},
			WorkDir:     "/tmp",
			Command:     []string{"python", "train.py", "--lr", "0.1"},
		}},
	}
	got, err := ParseJobFile([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseJobFile (-want +got):\n%s", diff)
	}
}

func TestParseJobFileMultiGroup(t *testing.T) {
	file := `
name: dist
time: "1-00:00:00"
groups:
  - name: ps
    tasks: 1
    cpus: 1
    command: [python, ps.py]
  - name: worker
    tasks: 4
    cpus: 500m
    memory: 512M
    gpus: 1
    script: |
      #!/bin/bash
      exec python worker.py
`
	want := api.JobSpec{
		Name: "dist", Walltime: api.Duration(24 * time.Hour),
		Groups: []api.TaskGroupSpec{
			{Name: "ps", Count: 1, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"python", "ps.py"}},
			{Name: "worker", Count: 4, Resources: api.Resources{MilliCPU: 500, MemoryBytes: 512 << 20, GPUs: 1},
				Command: []string{"/bin/bash", "-c", "#!/bin/bash\nexec python worker.py\n", ScriptArg0}},
		},
	}
	got, err := ParseJobFile([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseJobFile (-want +got):\n%s", diff)
	}
}

func TestParseJobFileForms(t *testing.T) {
	cases := []struct {
		name, file string
		want       api.JobSpec
	}{
		{"JSON with tabs", "{\n\t\"name\": \"j\",\n\t\"tasks\": 2,\n\t\"command\": [\"true\"]\n}\n",
			api.JobSpec{Name: "j", Groups: []api.TaskGroupSpec{{Count: 2, Command: []string{"true"}}}}},
		{"no command: one empty group for the CLI to fill", "name: j\n",
			api.JobSpec{Name: "j", Groups: []api.TaskGroupSpec{{}}}},
		{"Slurm time unquoted", "time: 1:30:00\n",
			api.JobSpec{Walltime: api.Duration(90 * time.Minute), Groups: []api.TaskGroupSpec{{}}}},
		{"bare time is minutes", "time: 90\n",
			api.JobSpec{Walltime: api.Duration(90 * time.Minute), Groups: []api.TaskGroupSpec{{}}}},
		{"fractional cpus", "cpus: 0.5\n",
			api.JobSpec{Groups: []api.TaskGroupSpec{{Resources: api.Resources{MilliCPU: 500}}}}},
		{"empty values are unset", "name:\nqueue: ~\ntasks: null\nenv:\n",
			api.JobSpec{Groups: []api.TaskGroupSpec{{}}}},
		{"script without #! runs with /bin/sh", "script: echo hi\n",
			api.JobSpec{Groups: []api.TaskGroupSpec{{Command: []string{"/bin/sh", "-c", "echo hi", ScriptArg0}}}}},
		{"script with a python #!", "script: |\n  #!/usr/bin/env python3\n  print(1)\n",
			api.JobSpec{Groups: []api.TaskGroupSpec{{Command: []string{"/usr/bin/env", "python3", "-c", "#!/usr/bin/env python3\nprint(1)\n"}}}}},
		{"quoted and empty arguments", `command: [echo, "", "a b", '#x']` + "\n",
			api.JobSpec{Groups: []api.TaskGroupSpec{{Command: []string{"echo", "", "a b", "#x"}}}}},
		{"anchors and merge keys share settings between groups", `
groups:
  - &base
    name: a
    cpus: 2
    env: {A: "1"}
    command: [x]
  - <<: *base
    name: b
    cpus: 3
`,
			api.JobSpec{Groups: []api.TaskGroupSpec{
				{Name: "a", Resources: api.Resources{MilliCPU: 2000}, Env: map[string]string{"A": "1"}, Command: []string{"x"}},
				{Name: "b", Resources: api.Resources{MilliCPU: 3000}, Env: map[string]string{"A": "1"}, Command: []string{"x"}},
			}}},
		{"merge of a list of mappings, the first wins", `
groups:
  - <<: [{tasks: 2, cpus: 1}, {tasks: 3, gpus: 1}]
    name: a
`,
			api.JobSpec{Groups: []api.TaskGroupSpec{{Name: "a", Count: 2, Resources: api.Resources{MilliCPU: 1000, GPUs: 1}}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseJobFile([]byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseJobFile (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseJobFileErrors(t *testing.T) {
	cases := []struct {
		name, file, want string
	}{
		{"empty file", "", "the job file is empty"},
		{"only comments", "# nothing\n", "the job file is empty"},
		{"syntax error", "name: a\n  b: c\n", "invalid YAML: line 2: mapping values are not allowed in this context"},
		{"two documents", "name: a\n---\nname: b\n", "line 2: a job file holds one job; found a second YAML document"},
		{"a list, not a job", "- a\n- b\n", `line 1: want a job: a mapping of fields such as name:, tasks: and command:; got a list`},
		{"unknown field with a hint", "name: a\nwalltime: 1h\n", `line 2: unknown field "walltime"; did you mean "time"?`},
		{"unknown field", "nmae: a\n",
			`line 1: unknown field "nmae"; known fields are name, queue, priority, time, retries, array, dependency, min_tasks, topology, placement, groups, tasks, cpus, memory, gpus, scratch, custom, constraints, env, workdir, command, script`},
		{"unknown group field", "groups:\n  - name: a\n    mem: 4G\n", `line 3: groups[0]: unknown field "mem"; did you mean "memory"?`},
		{"job field in a group", "groups:\n  - name: a\n    time: 1h\n", "line 3: groups[0].time: is a field of the job, not of a group; write it at the top level"},
		{"field written twice", "name: a\ntasks: 1\nname: b\n", "line 3: name: written twice (first on line 1)"},
		{"env written twice", "env:\n  A: 1\n  A: 2\n", "line 3: env.A: written twice (first on line 2)"},
		{"shorthand mixed with groups", "cpus: 2\ngroups:\n  - name: a\n", "line 1: cpus: cannot be used together with groups: (line 2); put it inside each group"},
		{"command and script", "command: [a]\nscript: b\n", "line 2: script: cannot be used together with command: (line 1); a group runs one or the other"},
		{"command as a string", "command: python train.py\n",
			`line 1: command: want a list of strings, such as ["python", "train.py"]; got "python train.py"; to run shell text, use script: instead`},
		{"null argument", "command: [a, ~]\n", `line 1: command[1]: want a value; got nothing (write "" for an empty string)`},
		{"tasks not a number", "tasks: four\n", `line 1: tasks: want a whole number; got "four"`},
		{"zero tasks", "tasks: 0\n", "line 1: tasks: must be at least 1; got 0"},
		{"tasks a fraction", "tasks: 2.5\n", `line 1: tasks: want a whole number; got "2.5"`},
		{"priority a list", "priority: [1]\n", "line 1: priority: want a single value; got a list"},
		{"bad cpus", "groups:\n  - name: a\n    cpus: lots\n", `line 3: groups[0].cpus: invalid CPU amount "lots": want cores (2, 0.5) or millicores (500m)`},
		{"zero cpus", "cpus: 0\n", `line 1: cpus: invalid CPU amount "0": must be more than zero`},
		{"bad memory", "memory: 4Q\n", `line 1: memory: invalid size "4Q": unknown unit "Q": want K, M, G, T or P (each 1024 times the last)`},
		{"bad time", "\n\ntime: 1:99\n", `line 3: time: invalid time "1:99": seconds must be 0-59`},
		{"bad custom amount", "custom: {fpga: two}\n", `line 1: custom.fpga: want a whole number; got "two"`},
		{"env not a mapping", "env: [A=1]\n", "line 1: env: want a mapping of names to values; got a list"},
		{"env value missing", "env:\n  A:\n", `line 2: env.A: want a value; got nothing (write "" for an empty string)`},
		{"groups not a list", "groups: {a: 1}\n", "line 1: groups: want a list of task groups (- name: …); got a mapping"},
		{"group not a mapping", "groups:\n  - a\n", `line 2: groups[0]: want a task group: a mapping of fields such as name:, tasks: and command:; got "a"`},
		{"mapping as a field name", "? [a]\n: b\n", "line 1: field names must be plain text; got a list"},
		{"script for an unknown interpreter", "script: |\n  #!/usr/bin/lua\n  print(1)\n",
			`line 1: script: cannot pass a script to "lua" from its #! line: dure knows how to run scripts with ` + interpreterNames + `; use command: to run a program file instead`},
		{"script with a relative #!", "script: \"#!bash\\necho\"\n", `line 1: script: the #! line must name the interpreter by its absolute path; got "bash"`},
		{"aliases that expand without end", aliasBomb(), "the job file expands to more than 2097152 values (through YAML aliases?)"},
		{"file too large", "name: a\n" + strings.Repeat("#", MaxJobFileBytes), "the job file is 4194312 bytes; at most 4194304 are allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseJobFile([]byte(tc.file))
			if err == nil {
				t.Fatalf("ParseJobFile succeeded; want error %q", tc.want)
			}
			// Line numbers may differ for the alias case; compare without the prefix there.
			got := err.Error()
			if tc.name == "aliases that expand without end" {
				_, got, _ = strings.Cut(got, ": ")
			}
			if got != tc.want {
				t.Errorf("error = %q\nwant    %q", got, tc.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("error is %T; want *ParseError", err)
			}
		})
	}
}

// aliasBomb is a small file whose merge keys, through aliases, expand to
// ten billion values: each group merges ten copies of the one before it.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("groups:\n  - &m0 {tasks: 1}\n")
	for i := 1; i < 10; i++ {
		prev := fmt.Sprintf("*m%d", i-1)
		fmt.Fprintf(&b, "  - &m%d {<<: [%s%s]}\n", i, strings.Repeat(prev+", ", 9), prev)
	}
	return b.String()
}
