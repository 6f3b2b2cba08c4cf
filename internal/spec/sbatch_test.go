package spec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

func TestParseSbatchFullScript(t *testing.T) {
	script := `#!/bin/bash
#SBATCH -J train
#SBATCH --partition=gpu
#SBATCH -n4
#SBATCH -c 2
#SBATCH --mem=4G
#SBATCH --gres=gpu:1
#SBATCH --time 1-00:00:00
#SBATCH --nice=5
#SBATCH --requeue
#SBATCH -D /scratch/me
#DURE --constraint=pool=gpu,rack=r3
#DURE	--retries 2   # dure's own directive, after a tab

# an ordinary comment; directives continue after it
#SBATCH --tmp=100
python train.py
#SBATCH --time=5
`
	want := api.JobSpec{
		Name: "train", Queue: "gpu", Walltime: api.Duration(24 * time.Hour), Priority: -5, MaxRetries: 2,
		Groups: []api.TaskGroupSpec{{
			Count:       4,
			Resources:   api.Resources{MilliCPU: 2000, MemoryBytes: 4 << 30, GPUs: 1, ScratchBytes: 100 << 20},
			WorkDir:     "/scratch/me",
			Constraints: map[string]string{"pool": "gpu", "rack": "r3"},
			Command:     []string{"/bin/bash", "-c", script, ScriptArg0},
		}},
	}
	got, err := ParseSbatch([]byte(script))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseSbatch (-want +got):\n%s", diff)
	}
}

func TestParseSbatchDirectives(t *testing.T) {
	cases := []struct {
		name, directives string
		want             func(s *api.JobSpec)
	}{
		{"no directives", "", func(s *api.JobSpec) {}},
		{"bare --mem counts megabytes", "#SBATCH --mem=4000", func(s *api.JobSpec) { s.Groups[0].Resources.MemoryBytes = 4000 << 20 }},
		{"--mem-per-cpu times cpus", "#SBATCH --mem-per-cpu=1G\n#SBATCH -c 4", func(s *api.JobSpec) {
			s.Groups[0].Resources.MemoryBytes = 4 << 30
			s.Groups[0].Resources.MilliCPU = 4000
		}},
		{"--mem-per-cpu with the default cpu", "#SBATCH --mem-per-cpu=512", func(s *api.JobSpec) { s.Groups[0].Resources.MemoryBytes = 512 << 20 }},
		{"--gpus is for the whole job", "#SBATCH --gpus=8\n#SBATCH --ntasks=4", func(s *api.JobSpec) {
			s.Groups[0].Resources.GPUs = 2
			s.Groups[0].Count = 4
		}},
		{"-G for one task", "#SBATCH -G 2", func(s *api.JobSpec) { s.Groups[0].Resources.GPUs = 2 }},
		{"--gpus-per-task", "#SBATCH --gpus-per-task=2 -n 3", func(s *api.JobSpec) {
			s.Groups[0].Resources.GPUs = 2
			s.Groups[0].Count = 3
		}},
		{"--gres=gpu means one", "#SBATCH --gres=gpu", func(s *api.JobSpec) { s.Groups[0].Resources.GPUs = 1 }},
		{"bare --nice", "#SBATCH --nice", func(s *api.JobSpec) { s.Priority = -100 }},
		{"negative --nice raises priority", "#SBATCH --nice=-5", func(s *api.JobSpec) { s.Priority = 5 }},
		{"--priority", "#SBATCH --priority 7", func(s *api.JobSpec) { s.Priority = 7 }},
		{"later directive wins", "#SBATCH --requeue\n#SBATCH --no-requeue\n#SBATCH -t 10\n#DURE -t 20", func(s *api.JobSpec) {
			s.Walltime = api.Duration(20 * time.Minute)
		}},
		{"quoted value with a space", `#SBATCH --job-name="my job"`, func(s *api.JobSpec) { s.Name = "my job" }},
		{"single quotes and escapes", `#SBATCH -J 'a "b"' --chdir=/x\ y`, func(s *api.JobSpec) {
			s.Name = `a "b"`
			s.Groups[0].WorkDir = "/x y"
		}},
		{"# inside a word is not a comment", "#SBATCH --job-name=run#3 # but this is", func(s *api.JobSpec) { s.Name = "run#3" }},
		{"-n=4 as getopt's users expect", "#SBATCH -n=4", func(s *api.JobSpec) { s.Groups[0].Count = 4 }},
		{"several options on one line", "#SBATCH -n 2 -c 0.5 --time=1:00:00", func(s *api.JobSpec) {
			s.Groups[0].Count = 2
			s.Groups[0].Resources.MilliCPU = 500
			s.Walltime = api.Duration(time.Hour)
		}},
		{"look-alikes are comments", "# SBATCH --qos=x\n#SBATCHX --qos=x\n##SBATCH --qos=x\n  #SBATCH --qos=x", func(s *api.JobSpec) {}},
		{"empty directive", "#SBATCH\n#DURE   ", func(s *api.JobSpec) {}},
		{"--array with a throttle", "#SBATCH --array=0-15:4%2", func(s *api.JobSpec) { s.Array = "0-15:4%2" }},
		{"-a", "#SBATCH -a 1,3,5-7", func(s *api.JobSpec) { s.Array = "1,3,5-7" }},
		{"--dependency", "#SBATCH --dependency=afterok:12:13_2,afterany:14", func(s *api.JobSpec) {
			s.Dependencies = []api.DependencySpec{{Type: "afterok", Job: "12"}, {Type: "afterok", Job: "13_2"}, {Type: "afterany", Job: "14"}}
		}},
		{"-d", "#SBATCH -d afternotok:9", func(s *api.JobSpec) { s.Dependencies = []api.DependencySpec{{Type: "afternotok", Job: "9"}} }},
		{"gang options", "#DURE --min-tasks 2 --topology=rack --spread", func(s *api.JobSpec) {
			s.MinTasks, s.Topology, s.Placement = 2, "rack", "spread"
		}},
		{"--spread-job and --placement", "#SBATCH --spread-job\n#DURE --placement=pack", func(s *api.JobSpec) { s.Placement = "pack" }},
		{"directives stop at the first command", "true\n#SBATCH --qos=ignored", func(s *api.JobSpec) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			script := "#!/bin/sh\n" + tc.directives + "\necho done\n"
			want := api.JobSpec{Groups: []api.TaskGroupSpec{{Command: []string{"/bin/sh", "-c", script, ScriptArg0}}}}
			tc.want(&want)
			got, err := ParseSbatch([]byte(script))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseSbatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSbatchErrors(t *testing.T) {
	const output = "output files are not supported yet; read a job's output with `dure logs ID`"
	cases := []struct {
		name, directives, want string
	}{
		{"unknown directive lists the supported ones", "#SBATCH --qos=high",
			"line 2: --qos: unknown directive; supported are -J/--job-name, -p/--partition, -n/--ntasks, -c/--cpus-per-task, --mem, --mem-per-cpu, -G/--gpus, --gpus-per-task, --gres, -t/--time, --nice, --priority, --requeue, --no-requeue, --retries, -D/--chdir, -C/--constraint, --tmp, -a/--array, -d/--dependency, --min-tasks, --topology, --placement, --spread, --spread-job"},
		{"unknown short directive", "#SBATCH -q high", "line 2: -q: unknown directive; supported are " + supportedList()},
		{"a prefix of a long option", "#SBATCH --tim=1", "line 2: --tim: unknown directive; supported are " + supportedList()},
		{"-o", "#SBATCH -o out.txt", "line 2: -o: " + output},
		{"--error", "#SBATCH --error=err.txt", "line 2: --error: " + output},
		{"bad --array", "#SBATCH --array=1-10%0", "line 2: --array: throttle %0: must be at least 1 (the most elements that run at once)"},
		{"bad -a", "#SBATCH -a 5-1", `line 2: -a: range "5-1" runs backwards; write the lower index first`},
		{"-d with an unsupported type", "#SBATCH -d after:1", `line 2: -d: "after:1": after (start after the job started) is not supported; use afterany or afterok`},
		{"-d with any-of", "#SBATCH -d afterok:1?afterok:2", "line 2: -d: '?' (start when any one condition holds) is not supported; every condition must hold: separate them with ','"},
		{"--min-tasks 0", "#SBATCH --min-tasks=0", "line 2: --min-tasks: must be at least 1; got 0"},
		{"--spread takes no value", "#SBATCH --spread=yes", "line 2: --spread: takes no value"},
		{"--export", "#SBATCH --export=ALL", "line 2: --export: is not supported yet; set variables in the script itself"},
		{"-N", "#SBATCH -N 2", "line 2: -N: dure places tasks, not nodes: ask for tasks with --ntasks and per-task resources"},
		{"--mem with --mem-per-cpu", "#SBATCH --mem=1G\n#SBATCH --mem-per-cpu=1G", "line 3: --mem-per-cpu: cannot be used together with --mem"},
		{"--mem=0", "#SBATCH --mem=0", "line 2: --mem: 0 (all of a node's memory) is not supported; ask for an amount such as 4G"},
		{"bad --mem", "#SBATCH --mem=lots", `line 2: --mem: invalid size "lots": want bytes or a number with a unit (512M, 4G, 1.5GiB)`},
		{"uneven --gpus", "#SBATCH --gpus=3\n#SBATCH -n 2", "line 2: --gpus: 3 GPUs cannot be shared evenly by 2 tasks; every task gets the same number (use --gpus-per-task)"},
		{"--gpus with --gres", "#SBATCH --gpus=1 --gres=gpu:1", "line 2: --gpus: cannot be used together with --gpus-per-task or --gres"},
		{"GPU type", "#SBATCH --gpus=a100:2", `line 2: --gpus: GPU types ("a100:2") are not supported yet; ask for a count and choose the model with --constraint=gpu.model=MODEL`},
		{"gres other than gpu", "#SBATCH --gres=fpga:1", `line 2: --gres: only gpu is supported (gpu or gpu:N); got "fpga:1"`},
		{"Slurm feature constraint", "#SBATCH -C gpu", `line 2: -C: want node labels as key=value[,key=value]; got "gpu" (Slurm feature expressions are not supported)`},
		{"several partitions", "#SBATCH -p a,b", `line 2: -p: a job goes to one queue; got the list "a,b"`},
		{"bad time", "#SBATCH --time=1:99", `line 2: --time: invalid time "1:99": seconds must be 0-59`},
		{"bad ntasks", "#SBATCH -n four", `line 2: -n: want a whole number; got "four"`},
		{"zero tasks", "#SBATCH --ntasks=0", "line 2: --ntasks: must be at least 1; got 0"},
		{"zero cpus", "#SBATCH -c 0", `line 2: -c: invalid CPU amount "0": must be more than zero`},
		{"missing value", "#SBATCH --ntasks", "line 2: --ntasks: needs a value"},
		{"value for a flag", "#SBATCH --requeue=yes", "line 2: --requeue: takes no value"},
		{"bad nice", "#SBATCH --nice=x", `line 2: --nice: want a whole number; got "x"`},
		{"unterminated quote", `#SBATCH -J "train`, `line 2: unterminated " quote`},
		{"a word that is not an option", "#SBATCH train", `line 2: unexpected "train": a directive line holds options such as --time=1:00`},
		{"a lone dash", "#SBATCH -", `line 2: unexpected "-": a directive line holds options such as --time=1:00`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			script := "#!/bin/sh\n" + tc.directives + "\necho done\n"
			_, err := ParseSbatch([]byte(script))
			if err == nil {
				t.Fatalf("ParseSbatch succeeded; want error %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error = %q\nwant    %q", err.Error(), tc.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("error is %T; want *ParseError", err)
			}
		})
	}
}

func TestParseSbatchWholeScriptErrors(t *testing.T) {
	cases := map[string]struct{ script, want string }{
		"empty":             {"\n\n", "the script is empty"},
		"DOS line breaks":   {"#!/bin/sh\r\necho hi\r\n", `the script has DOS line breaks (\r\n); convert it with dos2unix`},
		"too long":          {"echo " + strings.Repeat("x", MaxArgBytes), "the script is 131076 bytes; at most 131071 bytes are allowed (store a longer program in a file and run that)"},
		"#! without a path": {"#!\necho", "the #! line names no interpreter"},
		"env options":       {"#!/usr/bin/env -i bash\necho", `the #! line passes option "-i" to env; only -S is understood`},
		"env alone":         {"#!/usr/bin/env\necho", "the #! line runs /usr/bin/env without naming a program"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSbatch([]byte(tc.script))
			if err == nil || err.Error() != tc.want {
				t.Errorf("ParseSbatch = %v; want error %q", err, tc.want)
			}
		})
	}
}

func TestParseSbatchResultValidates(t *testing.T) {
	script := "#!/bin/bash\n#SBATCH -J hello -n 2 --mem=1G -t 5\necho hello\n"
	s, err := ParseSbatch([]byte(script))
	if err != nil {
		t.Fatal(err)
	}
	Normalize(&s)
	if err := Validate(&s); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if s.Name != "hello" || s.Groups[0].Name != "main" || s.Groups[0].Resources.MilliCPU != 1000 {
		t.Errorf("normalized spec = %+v; want name hello, group main, 1 CPU", s)
	}
}
