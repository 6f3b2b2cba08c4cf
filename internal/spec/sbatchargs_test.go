package spec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/durehq/dure/internal/api"
)

// dureOwn are the spellings dure sbatch itself handles (see internal/cli).
var dureOwn = map[string]bool{"--parsable": false, "--addr": true, "--help": false, "-h": false, "--env": true}

func TestSplitSbatchArgs(t *testing.T) {
	cases := []struct {
		name string
		argv string // split on spaces; "_" stands for a space inside a word
		want SbatchCommandLine
	}{
		{"short options with separate values", "-J name -n 4 -c 2 -t 10:00 -p gpu job.sh",
			SbatchCommandLine{Options: words("-J name -n 4 -c 2 -t 10:00 -p gpu"), Script: "job.sh"}},
		{"attached values and long forms", "-Jname -n4 --time=1:00 --mem 4G --requeue job.sh",
			SbatchCommandLine{Options: words("-Jname -n4 --time=1:00 --mem 4G --requeue"), Script: "job.sh"}},
		{"words after the script are its own", "-n 2 job.sh -t 5 --wrap x --parsable --bogus",
			SbatchCommandLine{Options: words("-n 2"), Script: "job.sh", ScriptArgs: words("-t 5 --wrap x --parsable --bogus")}},
		{"dure's own flags go to the caller", "--parsable -J x --addr 127.0.0.1:7070 --env=A=1 -h job.sh",
			SbatchCommandLine{Options: words("-J x"), Own: words("--parsable --addr 127.0.0.1:7070 --env=A=1 -h"), Script: "job.sh"}},
		{"dure submit's spellings are options", "--name n --tasks 3 --cpus 1 --queue q --workdir /w job.sh",
			SbatchCommandLine{Options: words("--name n --tasks 3 --cpus 1 --queue q --workdir /w"), Script: "job.sh"}},
		{"-- ends the options", "-n 2 -- -odd.sh -x",
			SbatchCommandLine{Options: words("-n 2"), Script: "-odd.sh", ScriptArgs: words("-x")}},
		{"- is stdin", "-t 5 - a", SbatchCommandLine{Options: words("-t 5"), Script: "-", ScriptArgs: words("a")}},
		{"a value may look like an option, as in getopt", "-J -n job.sh",
			SbatchCommandLine{Options: words("-J -n"), Script: "job.sh"}},
		{"--nice takes a value only after =", "--nice job.sh", SbatchCommandLine{Options: words("--nice"), Script: "job.sh"}},
		{"--wrap with =", "-J w --wrap=echo_hi", SbatchCommandLine{Options: words("-J w"), Wrap: "echo hi", HasWrap: true}},
		{"--wrap with a separate value", "--wrap echo_hi -t 1", SbatchCommandLine{Options: words("-t 1"), Wrap: "echo hi", HasWrap: true}},
		{"nothing", "", SbatchCommandLine{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SplitSbatchArgs(words(tc.argv), dureOwn)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("SplitSbatchArgs(%q) (-want +got):\n%s", tc.argv, diff)
			}
		})
	}
}

// words splits s on spaces and turns "_" into a space.
func words(s string) []string {
	var out []string
	for _, w := range strings.Fields(s) {
		out = append(out, strings.ReplaceAll(w, "_", " "))
	}
	return out
}

func TestSplitSbatchArgsErrors(t *testing.T) {
	cases := []struct{ name, argv, want string }{
		{"unknown long option gets the nearest", "--jobname x job.sh", "--jobname: unknown option; did you mean --job-name?"},
		{"a unique prefix is suggested", "--dep afterok:1 job.sh", "--dep: unknown option; did you mean --dependency?"},
		{"dure's own flags are candidates", "--parsible job.sh", "--parsible: unknown option; did you mean --parsable?"},
		{"nothing near", "--qos=high job.sh", "--qos: unknown option; sbatch options are " + supportedList()},
		{"unknown short option", "-q high job.sh", "-q: unknown option; sbatch options are " + supportedList()},
		{"an option a script may not use is still refused", "-o out.txt job.sh", "-o: output files are not supported yet; read a job's output with `dure logs ID`"},
		{"-N", "-N 2 job.sh", "-N: dure places tasks, not nodes: ask for tasks with --ntasks and per-task resources"},
		{"missing value", "-t", "-t: needs a value"},
		{"missing long value", "--time", "--time: needs a value"},
		{"missing value for dure's own flag", "--addr", "--addr: needs a value"},
		{"--wrap with a script", "--wrap=true job.sh", `--wrap: cannot be used with a script (got "job.sh"): the command is the whole script`},
		{"--wrap with an empty command", "--wrap=", "--wrap: needs a command, e.g. --wrap='echo hello'"},
		{"--wrap without a value", "--wrap", "--wrap: needs a value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SplitSbatchArgs(words(tc.argv), dureOwn)
			if err == nil || err.Error() != tc.want {
				t.Errorf("SplitSbatchArgs(%q) = %v\nwant error %q", tc.argv, err, tc.want)
			}
		})
	}
}

// parseCommandLine splits argv and parses it over script.
func parseCommandLine(t *testing.T, script, argv string) (api.JobSpec, error) {
	t.Helper()
	cl, err := SplitSbatchArgs(words(argv), dureOwn)
	if err != nil {
		t.Fatalf("SplitSbatchArgs(%q): %v", argv, err)
	}
	return cl.Parse([]byte(script), "job.sh")
}

func TestSbatchCommandLineOverridesScript(t *testing.T) {
	script := "#!/bin/sh\n" +
		"#SBATCH -J from-script -n 2 -c 1 --time=5 -p cpu\n" +
		"#SBATCH --mem=4G --gpus=2 -C rack=r1,pool=a --requeue\n" +
		"echo hi\n"
	base := api.JobSpec{
		Name: "from-script", Queue: "cpu", Walltime: api.Duration(5 * time.Minute), MaxRetries: RequeueRetries,
		Groups: []api.TaskGroupSpec{{
			Count:       2,
			Resources:   api.Resources{MilliCPU: 1000, MemoryBytes: 4 << 30, GPUs: 1},
			Constraints: map[string]string{"rack": "r1", "pool": "a"},
			Command:     []string{"/bin/sh", "-c", script, ScriptArg0},
		}},
	}
	cases := []struct {
		name, argv string
		want       func(s *api.JobSpec)
	}{
		{"no options: the script's", "", func(s *api.JobSpec) {}},
		{"short forms", "-J x -n 4 -c 2 -t 10:00 -p gpu -G 4", func(s *api.JobSpec) {
			s.Name, s.Queue, s.Walltime = "x", "gpu", api.Duration(10*time.Minute)
			s.Groups[0].Count, s.Groups[0].Resources.MilliCPU = 4, 2000
			s.Groups[0].Resources.GPUs = 1 // -G is for the whole job
		}},
		{"long forms, both spellings", "--job-name=x --ntasks 2 --time=1:00:00 --partition gpu", func(s *api.JobSpec) {
			s.Name, s.Queue, s.Walltime = "x", "gpu", api.Duration(time.Hour)
		}},
		{"attached short values", "-Jx -t30", func(s *api.JobSpec) { s.Name, s.Walltime = "x", api.Duration(30*time.Minute) }},
		{"dure submit's spellings", "--name x --tasks 1 --cpus 500m --queue q --workdir /w", func(s *api.JobSpec) {
			s.Name, s.Queue = "x", "q"
			s.Groups[0].Count, s.Groups[0].Resources.MilliCPU, s.Groups[0].Resources.GPUs, s.Groups[0].WorkDir = 1, 500, 2, "/w"
		}},
		{"--mem-per-cpu here replaces the script's --mem", "--mem-per-cpu=1G -c 3", func(s *api.JobSpec) {
			s.Groups[0].Resources.MilliCPU, s.Groups[0].Resources.MemoryBytes = 3000, 3<<30
		}},
		{"bare --mem counts megabytes here too", "--mem 100", func(s *api.JobSpec) { s.Groups[0].Resources.MemoryBytes = 100 << 20 }},
		{"--gpus-per-task here replaces the script's --gpus", "--gpus-per-task=3", func(s *api.JobSpec) { s.Groups[0].Resources.GPUs = 3 }},
		{"-C here replaces the script's labels; repeated ones add up", "-C pool=b --constraint=gpu=yes", func(s *api.JobSpec) {
			s.Groups[0].Constraints = map[string]string{"pool": "b", "gpu": "yes"}
		}},
		{"--no-requeue here beats the script's --requeue", "--no-requeue", func(s *api.JobSpec) { s.MaxRetries = 0 }},
		{"the last of repeated options wins", "-t 1 --time=2 -n 1 --tasks 2", func(s *api.JobSpec) { s.Walltime = api.Duration(2 * time.Minute) }},
		{"gang and dependency options", "-d afterok:7 -a 0-3 --min-tasks 1 --spread", func(s *api.JobSpec) {
			s.Dependencies = []api.DependencySpec{{Type: "afterok", Job: "7"}}
			s.Array, s.MinTasks, s.Placement = "0-3", 1, "spread"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := base
			want.Groups = []api.TaskGroupSpec{base.Groups[0]}
			want.Groups[0].Constraints = map[string]string{"rack": "r1", "pool": "a"}
			tc.want(&want)
			got, err := parseCommandLine(t, script, tc.argv)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("options %q (-want +got):\n%s", tc.argv, diff)
			}
		})
	}
}

// Every option means and checks the same on the command line as in a
// #SBATCH line: the same job, or the same error without the line.
func TestSbatchCommandLineMatchesDirectives(t *testing.T) {
	for _, opts := range []string{
		"-J train -p gpu -n4 -c 2 --mem=4G --gres=gpu:1 --time 1-00:00:00 --nice=5 --requeue -D /scratch",
		"--mem-per-cpu=1G -c 4", "--gpus=8 --ntasks=4", "-G 2", "--nice", "--priority 7 --retries 3 --tmp=100",
		"-a 1,3,5-7 -d afternotok:9", "--min-tasks 2 --topology=rack --spread-job --placement=pack",
		// errors
		"-n four", "--ntasks=0", "-c 0", "--mem=0", "--mem=lots", "--time=1:99", "-p a,b", "-C gpu",
		"--gpus=a100:2", "--gres=fpga:1", "--array=1-10%0", "-d after:1", "--min-tasks=0", "--spread=yes",
		"--requeue=yes", "--nice=x", "--gpus=3 -n 2", "--gpus=1 --gres=gpu:1", "--mem=1G --mem-per-cpu=1G",
	} {
		t.Run(opts, func(t *testing.T) {
			script := "#!/bin/sh\n#SBATCH " + opts + "\necho done\n"
			fromScript, scriptErr := ParseSbatch([]byte(script))
			fromArgs, argsErr := parseCommandLine(t, "#!/bin/sh\necho done\n", opts)
			if scriptErr != nil || argsErr != nil {
				want := strings.TrimPrefix(errString(scriptErr), "line 2: ")
				if errString(argsErr) != want {
					t.Fatalf("command line error %q; the #SBATCH line's is %q", errString(argsErr), errString(scriptErr))
				}
				return
			}
			fromArgs.Groups[0].Command = fromScript.Groups[0].Command // the texts differ by the directive line
			if diff := cmp.Diff(fromScript, fromArgs); diff != "" {
				t.Errorf("command line vs #SBATCH (-script +command line):\n%s", diff)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestSbatchCommandLineErrors(t *testing.T) {
	script := "#!/bin/sh\n#SBATCH --gpus=3\n#SBATCH --time=bad\necho\n"
	good := "#!/bin/sh\n#SBATCH --gpus=3\necho\n"
	cases := []struct{ name, script, argv, want string }{
		{"a bad value names the option as written", good, "-t 1:99", `-t: invalid time "1:99": seconds must be 0-59`},
		{"long form", good, "--time=1:99", `--time: invalid time "1:99": seconds must be 0-59`},
		{"dure's spelling", good, "--tasks 0", "--tasks: must be at least 1; got 0"},
		{"a script error names the script and line", script, "-t 5", `job.sh: line 3: --time: invalid time "bad": want e.g. "2h", "90m", "1:30:00" or "1-00:00:00"`},
		{"the script's --gpus against tasks given here", good, "-n 2", "job.sh: line 2: --gpus: 3 GPUs cannot be shared evenly by 2 tasks; every task gets the same number (use --gpus-per-task)"},
		{"--gpus given here against the script's tasks", "#!/bin/sh\n#SBATCH -n 2\necho\n", "--gpus 3", "--gpus: 3 GPUs cannot be shared evenly by 2 tasks; every task gets the same number (use --gpus-per-task)"},
		{"rivals both given here", good, "--mem=1G --mem-per-cpu=1G", "--mem-per-cpu: cannot be used together with --mem"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCommandLine(t, tc.script, tc.argv)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v\nwant %q", err, tc.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("error is %T; want a *ParseError inside", err)
			}
		})
	}
}

func TestSbatchWrap(t *testing.T) {
	cl, err := SplitSbatchArgs(words("-J x -t 1:00 --wrap=echo_hi"), dureOwn)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.Parse(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	want := api.JobSpec{Name: "x", Walltime: api.Duration(time.Minute), Groups: []api.TaskGroupSpec{{
		Command: []string{"/bin/sh", "-c", "#!/bin/sh\necho hi\n", ScriptArg0},
	}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("--wrap (-want +got):\n%s", diff)
	}

	// A wrapped command is not a script with directives.
	cl, _ = SplitSbatchArgs([]string{"--wrap", "#SBATCH -n 4\necho hi"}, nil)
	if got, err := cl.Parse(nil, ""); err != nil || got.Groups[0].Count != 0 {
		t.Errorf("--wrap '#SBATCH -n 4…' = %+v, %v; want the line left as a comment", got, err)
	}

	cl, _ = SplitSbatchArgs([]string{"--wrap", strings.Repeat("x", MaxArgBytes)}, nil)
	if _, err := cl.Parse(nil, ""); err == nil || !strings.HasPrefix(err.Error(), "--wrap: the script is ") {
		t.Errorf("a too long --wrap: %v; want an error naming --wrap", err)
	}
}

func TestSbatchCommandLineSets(t *testing.T) {
	cl, err := SplitSbatchArgs(words("-J -d -n 2 --mem=1G"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// "-d" is -J's value, not an option.
	for long, want := range map[string]bool{"job-name": true, "dependency": false, "ntasks": true, "mem": true, "time": false} {
		if got := cl.Sets(long); got != want {
			t.Errorf("Sets(%q) = %v, want %v", long, got, want)
		}
	}
	if cl, _ := SplitSbatchArgs(words("--dependency=afterok:1"), nil); !cl.Sets("dependency") {
		t.Error(`Sets("dependency") = false for --dependency=afterok:1`)
	}
}

func TestNearest(t *testing.T) {
	known := []string{"--job-name", "--mem", "--mem-per-cpu", "--mem-per-gpu", "--time", "--ntasks"}
	for name, want := range map[string]string{
		"--jobname": "--job-name", "--tmie": "--time", "--ntask": "--ntasks", "--mem-per": "",
		"--m": "", "-t": "", "--xyzzy": "", "--tim": "--time",
	} {
		if got := nearest(name, known); got != want {
			t.Errorf("nearest(%q) = %q, want %q", name, got, want)
		}
	}
}
