package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSubmitBuildsSpecFromFlags(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		file  string // job file contents; its path is passed where args say FILE
		args  []string
		want  api.JobSpec
	}{
		{
			name: "command only gets the defaults and the user as owner",
			args: []string{"--", "sleep", "10"},
			want: api.JobSpec{Name: "sleep", Queue: "default", Owner: "alice", Groups: []api.TaskGroupSpec{{
				Name: "main", Count: 1, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"sleep", "10"},
			}}},
		},
		{
			name: "every flag",
			args: []string{"--name", "train", "--queue", "gpu", "--cpus", "2.5", "--mem", "4G", "--gpus", "2",
				"--tasks", "4", "--time", "1:30:00", "--priority", "5", "--retries", "2", "--env", "A=1",
				"--env", "B=x=y", "--constraint", "rack=r3", "--workdir", "/data", "--idempotency-key", "k1",
				"--", "python", "train.py", "--epochs", "3"},
			want: api.JobSpec{Name: "train", Queue: "gpu", Owner: "alice", Priority: 5, MaxRetries: 2,
				Walltime: api.Duration(90 * time.Minute), IdempotencyKey: "k1",
				Groups: []api.TaskGroupSpec{{
					Name: "main", Count: 4, Resources: api.Resources{MilliCPU: 2500, MemoryBytes: 4 << 30, GPUs: 2},
					Command: []string{"python", "train.py", "--epochs", "3"}, Env: map[string]string{"A": "1", "B": "x=y"},
					Constraints: map[string]string{"rack": "r3"}, WorkDir: "/data",
				}}},
		},
		{
			name: "flags override the job file",
			file: "name: fromfile\nqueue: batch\ncpus: 2\nenv:\n  A: file\n  KEEP: yes\ncommand: [echo, file]\n",
			args: []string{"FILE", "--queue", "short", "--env", "A=flag", "--", "echo", "flag"},
			want: api.JobSpec{Name: "fromfile", Queue: "short", Owner: "alice", Groups: []api.TaskGroupSpec{{
				Name: "main", Count: 1, Resources: api.Resources{MilliCPU: 2000}, Command: []string{"echo", "flag"},
				Env: map[string]string{"A": "flag", "KEEP": "yes"},
			}}},
		},
		{
			name:  "job file from stdin",
			stdin: "name: piped\ncommand: [true]\n",
			args:  []string{"-"},
			want: api.JobSpec{Name: "piped", Queue: "default", Owner: "alice", Groups: []api.TaskGroupSpec{{
				Name: "main", Count: 1, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"true"},
			}}},
		},
		{
			name: "job-level flags leave a multi-group file's groups alone",
			file: "groups:\n- name: ps\n  command: [ps]\n- name: worker\n  tasks: 2\n  command: [w]\n",
			args: []string{"FILE", "--name", "multi", "--priority", "1"},
			want: api.JobSpec{Name: "multi", Queue: "default", Owner: "alice", Priority: 1, Groups: []api.TaskGroupSpec{
				{Name: "ps", Count: 1, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"ps"}},
				{Name: "worker", Count: 2, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"w"}},
			}},
		},
		{
			name: "array, dependency and gang flags",
			args: []string{"--array", "0-15:4%2", "--afterok", "3,4_1", "--afterany", "5", "--afternotok", "6",
				"--min-tasks", "2", "--topology", "rack", "--spread", "--tasks", "4", "--", "x"},
			want: api.JobSpec{Name: "x", Queue: "default", Owner: "alice", Array: "0-15:4%2", MinTasks: 2, Topology: "rack", Placement: "spread",
				Dependencies: []api.DependencySpec{{Type: "afterok", Job: "3"}, {Type: "afterok", Job: "4_1"}, {Type: "afterany", Job: "5"}, {Type: "afternotok", Job: "6"}},
				Groups:       []api.TaskGroupSpec{{Name: "main", Count: 4, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"x"}}}},
		},
		{
			name: "dependency flags replace the file's",
			file: "dependency: afterok:9\narray: 1-3\nplacement: spread\ncommand: [x]\n",
			args: []string{"FILE", "-d", "afterany:7:8", "-a", "5", "--placement", "pack"},
			want: api.JobSpec{Name: "x", Queue: "default", Owner: "alice", Array: "5", Placement: "pack",
				Dependencies: []api.DependencySpec{{Type: "afterany", Job: "7"}, {Type: "afterany", Job: "8"}},
				Groups:       []api.TaskGroupSpec{{Name: "main", Count: 1, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"x"}}}},
		},
		{
			name: "flag-like words after -- belong to the command",
			args: []string{"--cpus", "1", "--", "ls", "--cpus", "-la"},
			want: api.JobSpec{Name: "ls", Queue: "default", Owner: "alice", Groups: []api.TaskGroupSpec{{
				Name: "main", Count: 1, Resources: api.Resources{MilliCPU: 1000}, Command: []string{"ls", "--cpus", "-la"},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			args := append([]string{"submit"}, tt.args...)
			if tt.file != "" {
				p := writeFile(t, "job.yaml", tt.file)
				for i, a := range args {
					if a == "FILE" {
						args[i] = p
					}
				}
			}
			res := runCLI(t, srv.srv.URL, tt.stdin, args...)
			if res.code != 0 || res.stdout != "1\n" || res.stderr != "" {
				t.Fatalf("dure %s: code %d, stdout %q, stderr %q; want code 0 and the job ID alone", strings.Join(args, " "), res.code, res.stdout, res.stderr)
			}
			got := srv.submitted()
			// The client adds a random idempotency key when the user gives
			// none (safe retries); check it is there, then compare the rest.
			for i := range got {
				if tt.want.IdempotencyKey == "" && strings.HasPrefix(got[i].IdempotencyKey, "auto-") {
					got[i].IdempotencyKey = ""
				}
			}
			if diff := cmp.Diff([]api.JobSpec{tt.want}, got); diff != "" {
				t.Errorf("submitted spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSubmitRejectsBadInputBeforeSending(t *testing.T) {
	multi := "groups:\n- name: a\n  command: [a]\n- name: b\n  command: [b]\n"
	tests := []struct {
		name    string
		file    string
		args    []string
		wantErr string // the whole of stderr
	}{
		{"no command", "", nil,
			"dure: nothing to run: give a JOBFILE or a command after --, e.g. dure submit -- sleep 10\nRun 'dure submit --help' for usage.\n"},
		{"command without --", "", []string{"sleep", "10"},
			"dure: takes at most one JOBFILE, got 2 arguments (put the command after --, e.g. dure submit -- sleep 10)\nRun 'dure submit --help' for usage.\n"},
		{"bad cpus", "", []string{"--cpus", "lots", "--", "true"},
			"dure: --cpus: invalid CPU amount \"lots\": want cores (2, 0.5) or millicores (500m)\n"},
		{"bad env", "", []string{"--env", "NOVALUE", "--", "true"},
			"dure: --env: want KEY=VALUE (got \"NOVALUE\")\n"},
		{"zero tasks", "", []string{"--tasks", "0", "--", "true"},
			"dure: --tasks: must be at least 1 (got 0)\n"},
		{"group flag with a multi-group file", multi, []string{"FILE", "--cpus", "2"},
			"dure: --cpus: the job file has 2 task groups, so it is unclear which one to change; set it per group in the file\n"},
		{"command with a multi-group file", multi, []string{"FILE", "--", "true"},
			"dure: the command after --: the job file has 2 task groups, so it is unclear which one to change; set it per group in the file\n"},
		{"unknown flag", "", []string{"--cpu", "2", "--", "true"},
			"dure: unknown flag: --cpu\nRun 'dure submit --help' for usage.\n"},
		{"validation names the field", "", []string{"--priority", "100000000", "--", "true"},
			"dure: priority: must be between -1000000 and 1000000; got 100000000\n"},
		{"bad array", "", []string{"--array", "5-1", "--", "true"},
			"dure: --array: range \"5-1\" runs backwards; write the lower index first\n"},
		{"bad dependency", "", []string{"--dependency", "after:3", "--", "true"},
			"dure: --dependency: \"after:3\": after (start after the job started) is not supported; use afterany or afterok\n"},
		{"bad afterok", "", []string{"--afterok", "3,x", "--", "true"},
			"dure: --afterok: invalid job ID \"x\": want a positive number like 12, or an array element like 12_3\n"},
		{"zero min-tasks", "", []string{"--min-tasks", "0", "--", "true"},
			"dure: --min-tasks: must be at least 1 (got 0)\n"},
		{"min-tasks above the tasks", "", []string{"--min-tasks", "3", "--tasks", "2", "--", "true"},
			"dure: min_tasks: must be between 1 and the job's task count (2), or 0 for all; got 3\n"},
		{"bad placement", "", []string{"--placement", "scatter", "--", "true"},
			"dure: --placement: must be pack or spread (got \"scatter\")\n"},
		{"spread against pack", "", []string{"--spread", "--placement", "pack", "--", "true"},
			"dure: --spread: contradicts --placement pack\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			args := append([]string{"submit"}, tt.args...)
			if tt.file != "" {
				p := writeFile(t, "job.yaml", tt.file)
				args[1] = p
			}
			res := runCLI(t, srv.srv.URL, "", args...)
			if res.code != 1 || res.stdout != "" {
				t.Errorf("code %d, stdout %q; want 1 and nothing", res.code, res.stdout)
			}
			if res.stderr != tt.wantErr {
				t.Errorf("stderr:\n%q\nwant:\n%q", res.stderr, tt.wantErr)
			}
			if n := len(srv.submitted()); n != 0 {
				t.Errorf("%d jobs reached the server; want none", n)
			}
		})
	}
}

func TestSubmitJobFileErrorNamesFileAndLine(t *testing.T) {
	p := writeFile(t, "job.yaml", "name: x\ncpu: 2\ncommand: [true]\n")
	res := runCLI(t, "http://127.0.0.1:1", "", "submit", p)
	if res.code != 1 || !strings.HasPrefix(res.stderr, "dure: "+p+": line 2: ") {
		t.Errorf("code %d, stderr %q; want 1 and an error naming %s line 2", res.code, res.stderr, p)
	}
}

func TestSubmitServerErrorPrintsFieldAndMessage(t *testing.T) {
	srv := newFakeServer(t)
	srv.submitErr = &api.Error{Code: api.CodeInvalid, Field: "groups[0].resources.gpus", Message: "no node has 64 GPUs"}
	res := runCLI(t, srv.srv.URL, "", "submit", "--gpus", "64", "--", "true")
	want := cliResult{stderr: "dure: groups[0].resources.gpus: no node has 64 GPUs\n", code: 1}
	if res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
}

func TestUnreachableServerGivesAdvice(t *testing.T) {
	// A port nobody listens on: bind one, then close it.
	srv := newFakeServer(t)
	addr := srv.srv.URL
	srv.srv.Close()
	res := runCLI(t, addr, "", "submit", "--", "true")
	if res.code != 1 || !strings.Contains(res.stderr, "cannot reach the dure server at "+addr) ||
		!strings.Contains(res.stderr, "set --addr or DURE_ADDR") {
		t.Errorf("code %d, stderr %q; want advice naming %s", res.code, res.stderr, addr)
	}
}

func TestSbatch(t *testing.T) {
	script := "#!/bin/bash\n#SBATCH --job-name=nightly\n#SBATCH --ntasks=3\necho hi \"$1\"\n"
	tests := []struct {
		name        string
		args        []string
		wantOut     string
		wantCount   int
		wantName    string
		wantArgTail []string
	}{
		{"prints like sbatch", []string{"SCRIPT"}, "Submitted batch job 1\n", 3, "nightly", nil},
		{"parsable prints the ID alone", []string{"--parsable", "SCRIPT"}, "1\n", 3, "nightly", nil},
		{"flags override directives", []string{"--tasks", "5", "--name", "adhoc", "SCRIPT"}, "Submitted batch job 1\n", 5, "adhoc", nil},
		{"words after the script are its arguments", []string{"SCRIPT", "--tasks", "x"}, "Submitted batch job 1\n", 3, "nightly", []string{"--tasks", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			res := runSbatch(t, srv, script, tt.args)
			if res.code != 0 || res.stdout != tt.wantOut || res.stderr != "" {
				t.Fatalf("got %+v, want stdout %q", res, tt.wantOut)
			}
			specs := srv.submitted()
			if len(specs) != 1 {
				t.Fatalf("%d submissions, want 1", len(specs))
			}
			s := specs[0]
			if s.Name != tt.wantName || s.Groups[0].Count != tt.wantCount || s.Owner != "alice" {
				t.Errorf("name %q count %d owner %q; want %q, %d, alice", s.Name, s.Groups[0].Count, s.Owner, tt.wantName, tt.wantCount)
			}
			cmd := s.Groups[0].Command
			if len(cmd) < 3 || cmd[0] != "/bin/bash" || cmd[2] != script {
				t.Errorf("command %q does not run the script with bash", cmd)
			}
			if tail := cmd[len(cmd)-len(tt.wantArgTail):]; !cmp.Equal(tail, tt.wantArgTail, cmpEmpty) {
				t.Errorf("command ends %q, want script arguments %q", tail, tt.wantArgTail)
			}
		})
	}
}

var cmpEmpty = cmp.Comparer(func(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") })

func TestSbatchArrayAndRunRefusesArrays(t *testing.T) {
	srv := newFakeServer(t)
	p := writeFile(t, "job.sh", "#!/bin/sh\n#SBATCH --array=1-20%3 -d afterok:7\necho $SLURM_ARRAY_TASK_ID\n")
	if res := runCLI(t, srv.srv.URL, "", "sbatch", "--parsable", p); res.code != 0 || res.stdout != "1\n" {
		t.Fatalf("sbatch: %+v", res)
	}
	s := srv.submitted()[0]
	if s.Array != "1-20%3" || !cmp.Equal(s.Dependencies, []api.DependencySpec{{Type: "afterok", Job: "7"}}) {
		t.Errorf("sbatch spec: array %q dependencies %+v; want the directives'", s.Array, s.Dependencies)
	}
	res := runCLI(t, srv.srv.URL, "", "run", "--array", "1-3", "--", "true")
	if res.code != 1 || !strings.Contains(res.stderr, "dure run follows one job; submit arrays with dure submit or dure sbatch") {
		t.Errorf("run --array: %+v; want a refusal", res)
	}
	if n := len(srv.submitted()); n != 1 {
		t.Errorf("%d submissions; want only the sbatch one", n)
	}
}

func TestSbatchBadDirectiveNamesLine(t *testing.T) {
	p := writeFile(t, "job.sh", "#!/bin/sh\n#SBATCH --ntasks=many\ntrue\n")
	res := runCLI(t, "http://127.0.0.1:1", "", "sbatch", p)
	if res.code != 1 || !strings.HasPrefix(res.stderr, "dure: "+p+": line 2: ") {
		t.Errorf("got %+v; want exit 1 and an error at %s line 2", res, p)
	}
}

func TestSubmitUsesAddrFlagOverEnv(t *testing.T) {
	srv := newFakeServer(t)
	// DURE_ADDR points nowhere; --addr wins.
	res := runCLI(t, "http://127.0.0.1:1", "", "--addr", srv.srv.URL, "submit", "--", "true")
	if res.code != 0 || res.stdout != "1\n" {
		t.Errorf("got %+v; want the job submitted through --addr", res)
	}
}

func TestServerAddrPrecedence(t *testing.T) {
	tests := []struct {
		name, flag string
		env        map[string]string
		want       string
	}{
		{"default", "", nil, api.DefaultAddr},
		{"env", "", map[string]string{"DURE_ADDR": "http://10.0.0.1:7070"}, "http://10.0.0.1:7070"},
		{"flag beats env", "10.0.0.2:7070", map[string]string{"DURE_ADDR": "http://10.0.0.1:7070"}, "10.0.0.2:7070"},
		{"empty env is unset", "", map[string]string{"DURE_ADDR": ""}, api.DefaultAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &app{addr: tt.flag, env: func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }}
			if got := a.serverAddr(); got != tt.want {
				t.Errorf("serverAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSbatchCommandLineOptions(t *testing.T) {
	script := "#!/bin/bash\n#SBATCH --job-name=nightly -n 3 -t 5 -p cpu --mem=1G\n#SBATCH -d afterok:7\necho hi \"$@\"\n"
	type want struct {
		name, queue string
		count       int
		walltime    time.Duration
		mem         int64
		deps        []api.DependencySpec
		argTail     []string
	}
	scriptDeps := []api.DependencySpec{{Type: "afterok", Job: "7"}}
	tests := []struct {
		name string
		args []string
		want want
	}{
		{"Slurm's short forms override the script", []string{"-J", "x", "-n", "4", "-c", "2", "-t", "10:00", "-p", "gpu", "SCRIPT"},
			want{"x", "gpu", 4, 10 * time.Minute, 1 << 30, scriptDeps, nil}},
		{"attached short values and long forms", []string{"-Jx", "-n1", "--time=1:00:00", "--partition", "gpu", "--mem", "512", "SCRIPT"},
			want{"x", "gpu", 1, time.Hour, 512 << 20, scriptDeps, nil}},
		{"options after the script are its arguments", []string{"-t", "1", "SCRIPT", "-J", "y", "--time=2", "--parsable"},
			want{"nightly", "cpu", 3, time.Minute, 1 << 30, scriptDeps, []string{"-J", "y", "--time=2", "--parsable"}}},
		{"-- ends the options", []string{"-n", "2", "--", "SCRIPT", "-n", "5"},
			want{"nightly", "cpu", 2, 5 * time.Minute, 1 << 30, scriptDeps, []string{"-n", "5"}}},
		{"-d replaces the script's dependencies", []string{"-d", "afterany:9", "SCRIPT"},
			want{"nightly", "cpu", 3, 5 * time.Minute, 1 << 30, []api.DependencySpec{{Type: "afterany", Job: "9"}}, nil}},
		{"so does --afterok", []string{"--afterok", "9", "SCRIPT"},
			want{"nightly", "cpu", 3, 5 * time.Minute, 1 << 30, []api.DependencySpec{{Type: "afterok", Job: "9"}}, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			res := runSbatch(t, srv, script, tt.args)
			if res.code != 0 || res.stdout != "Submitted batch job 1\n" || res.stderr != "" {
				t.Fatalf("got %+v, want the job submitted", res)
			}
			s := srv.submitted()[0]
			g := s.Groups[0]
			got := want{s.Name, s.Queue, g.Count, time.Duration(s.Walltime), g.Resources.MemoryBytes, s.Dependencies, nil}
			if cmd := g.Command; len(cmd) < 4 || cmd[0] != "/bin/bash" || cmd[2] != script || cmd[3] != "dure-script" {
				t.Fatalf("command %q does not run the script with bash", cmd)
			} else if len(cmd) > 4 {
				got.argTail = cmd[4:]
			}
			if !cmp.Equal(got, tt.want, cmp.AllowUnexported(want{}), cmpEmpty) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSbatchWrap(t *testing.T) {
	srv := newFakeServer(t)
	res := runCLI(t, srv.srv.URL, "", "sbatch", "--parsable", "-t", "1:00", "--wrap", "echo hi")
	if res.code != 0 || res.stdout != "1\n" {
		t.Fatalf("sbatch --wrap: %+v", res)
	}
	res = runCLI(t, srv.srv.URL, "", "sbatch", "-J", "x", "--wrap=echo hi", "--env", "A=1")
	if res.code != 0 || res.stdout != "Submitted batch job 2\n" {
		t.Fatalf("sbatch -J x --wrap: %+v", res)
	}
	specs := srv.submitted()
	wantCmd := []string{"/bin/sh", "-c", "#!/bin/sh\necho hi\n", "dure-script"}
	if s := specs[0]; s.Name != "wrap" || time.Duration(s.Walltime) != time.Minute || !cmp.Equal(s.Groups[0].Command, wantCmd) {
		t.Errorf("--wrap job: name %q walltime %v command %q; want wrap, 1m0s, %q", s.Name, time.Duration(s.Walltime), s.Groups[0].Command, wantCmd)
	}
	if s := specs[1]; s.Name != "x" || s.Groups[0].Env["A"] != "1" {
		t.Errorf("-J x --wrap job: name %q env %v; want x and A=1", s.Name, s.Groups[0].Env)
	}
}

func TestSbatchOwnFlags(t *testing.T) {
	srv := newFakeServer(t)
	// DURE_ADDR points nowhere; --addr after sbatch, among sbatch options, wins.
	res := runCLI(t, "http://127.0.0.1:1", "#!/bin/sh\necho from stdin\n", "sbatch", "-n", "2", "--addr", srv.srv.URL, "--parsable", "-", "a")
	if res.code != 0 || res.stdout != "1\n" {
		t.Fatalf("got %+v; want the job submitted through --addr", res)
	}
	if s := srv.submitted()[0]; s.Groups[0].Count != 2 || !cmp.Equal(s.Groups[0].Command, []string{"/bin/sh", "-c", "#!/bin/sh\necho from stdin\n", "dure-script", "a"}) {
		t.Errorf("stdin script: count %d command %q; want 2 tasks running stdin's script with argument a", s.Groups[0].Count, s.Groups[0].Command)
	}
	for _, help := range []string{"--help", "-h"} {
		res := runCLI(t, srv.srv.URL, "", "sbatch", "-J", "x", help)
		if res.code != 0 || !strings.Contains(res.stdout, "-t/--time") || !strings.Contains(res.stdout, "--parsable") {
			t.Errorf("sbatch %s: %+v; want help listing sbatch options and --parsable", help, res)
		}
	}
	if n := len(srv.submitted()); n != 1 {
		t.Errorf("%d submissions; help must submit nothing", n)
	}
}

func TestSbatchCommandLineErrors(t *testing.T) {
	script := writeFile(t, "job.sh", "#!/bin/sh\n#SBATCH --gpus=3\necho\n")
	const usage = "Run 'dure sbatch --help' for usage.\n"
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"a bad value names the option", []string{"-t", "1:99", "SCRIPT"}, "dure: -t: invalid time \"1:99\": seconds must be 0-59\n"},
		{"long form", []string{"--ntasks=many", "SCRIPT"}, "dure: --ntasks: want a whole number; got \"many\"\n"},
		{"a script error names the file and line", []string{"-n", "2", "SCRIPT"}, "dure: {script}: line 2: --gpus: 3 GPUs cannot be shared evenly by 2 tasks; every task gets the same number (use --gpus-per-task)\n"},
		{"unknown option with the nearest", []string{"--job-nme=x", "SCRIPT"}, "dure: --job-nme: unknown option; did you mean --job-name?\n" + usage},
		{"-o is refused as in scripts", []string{"-o", "out", "SCRIPT"}, "dure: -o: output files are not supported yet; read a job's output with `dure logs ID`\n" + usage},
		{"--wrap with a script", []string{"--wrap", "true", "SCRIPT"}, "dure: --wrap: cannot be used with a script (got \"{script}\"): the command is the whole script\n" + usage},
		{"nothing to run", []string{"-n", "2"}, "dure: nothing to run: give a SCRIPT (- reads stdin) or --wrap=CMD, e.g. dure sbatch --wrap 'echo hello'\n" + usage},
		{"an empty script path", []string{"-n", "2", ""}, "dure: SCRIPT: is an empty path: give the script's file name, - to read it from stdin, or --wrap=CMD\n" + usage},
		{"missing value", []string{"SCRIPT_LAST", "-t"}, "dure: -t: needs a value\n" + usage},
		{"--afterok with -d", []string{"-d", "afterok:1", "--afterok", "2", "SCRIPT"}, "dure: --afterok, --afterany and --afternotok cannot be combined with -d/--dependency; write every condition in --dependency (afterok:12,afterany:13)\n" + usage},
		{"a bad value of dure's own flag", []string{"--env", "noequals", "SCRIPT"}, "dure: --env: want KEY=VALUE (got \"noequals\")\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			var args []string
			for _, a := range tt.args {
				switch a {
				case "SCRIPT":
					a = script
				case "SCRIPT_LAST":
					continue
				}
				args = append(args, a)
			}
			res := runCLI(t, srv.srv.URL, "", append([]string{"sbatch"}, args...)...)
			want := strings.ReplaceAll(tt.stderr, "{script}", script)
			if res.code != 1 || res.stderr != want || res.stdout != "" {
				t.Errorf("got code %d stdout %q stderr\n%q\nwant %q", res.code, res.stdout, res.stderr, want)
			}
			if n := len(srv.submitted()); n != 0 {
				t.Errorf("%d submissions; want none", n)
			}
		})
	}
}

// runSbatch runs dure sbatch with args, in which "SCRIPT" stands for the
// path of a file holding script.
func runSbatch(t *testing.T, srv *fakeServer, script string, args []string) cliResult {
	t.Helper()
	p := writeFile(t, "job.sh", script)
	argv := []string{"sbatch"}
	for _, a := range args {
		if a == "SCRIPT" {
			a = p
		}
		argv = append(argv, a)
	}
	return runCLI(t, srv.srv.URL, "", argv...)
}
