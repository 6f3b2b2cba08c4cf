package spec

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/durehq/dure/internal/api"
)

// Run briefly with: go test ./internal/spec -run '^$' -fuzz FuzzParseJobFile -fuzztime 20s

func FuzzParseJobFile(f *testing.F) {
	for _, seed := range []string{
		"name: train\ntasks: 4\ncpus: 2\nmemory: 4G\ngpus: 1\ntime: 2h\ncommand: [python, train.py]\n",
		"groups:\n  - name: ps\n    command: [a]\n  - name: w\n    tasks: 2\n    script: |\n      #!/bin/bash\n      echo\n",
		"{\"name\": \"j\", \"tasks\": 2, \"command\": [\"true\"]}",
		"groups:\n  - &b {name: a, command: [x]}\n  - <<: *b\n    name: b\n",
		"env: {A: 1}\nconstraints: {pool: gpu}\ncustom: {fpga: 2}\nworkdir: /tmp\nretries: 3\npriority: -5\n",
		"time: 1-00:00:00\nscript: \"#!/usr/bin/env python3\\nprint(1)\"\n",
		"name: a\n---\nname: b\n",
		"? [a]\n: b\n",
		"array: 0-15:4%2\ndependency: afterok:12:13_2,afterany:14\nmin_tasks: 2\ntopology: rack\nplacement: spread\ntasks: 4\ncommand: [x]\n",
		"dependency: [afterok:1, 'afternotok:2_0']\narray: '1,3,5-7'\ncommand: [x]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseJobFile(data)
		if refused(t, err) {
			return
		}
		if len(s.Groups) == 0 {
			t.Fatal("ParseJobFile succeeded with no groups")
		}
		checkAccepted(t, &s)
	})
}

func FuzzParseSbatch(f *testing.F) {
	for _, seed := range []string{
		"#!/bin/bash\n#SBATCH -J train\n#SBATCH -n4 -c 2 --mem=4G --gres=gpu:1\n#SBATCH --time 1-00:00:00\npython train.py\n",
		"#!/bin/sh\n#DURE --constraint=pool=gpu --retries 2\n#SBATCH --mem-per-cpu=1G -c 4\necho\n",
		"#SBATCH --gpus=8 --ntasks=4 --nice\n#SBATCH -J \"a b\" --chdir=/x\\ y # c\nwork\n",
		"#!/usr/bin/env -S python3 -u\n#SBATCH --tmp=100 --priority 5 --requeue\nprint(1)\n",
		"#!/bin/sh\n#SBATCH --qos=x\n",
		"#!/bin/sh\n#SBATCH -J 'unterminated\n",
		"#!/bin/sh\n#SBATCH --array=1-20%3 -d afterok:5:6_1\n#DURE --min-tasks 2 --topology rack --spread -n 4\necho $SLURM_ARRAY_TASK_ID\n",
		"#!/bin/sh\n#SBATCH -a 0-15:4 --dependency=afternotok:9,afterany:10 --spread-job --placement=pack\n",
		"#!/bin/sh\n#SBATCH --wrap='echo hi' --name=x\n",
		"#!/bin/sh\n#SBATCH --mem=1G\n#SBATCH --mem-per-cpu=1G -C a=b -C c=d\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSbatch(data)
		if refused(t, err) {
			return
		}
		if len(s.Groups) != 1 {
			t.Fatalf("ParseSbatch made %d groups; want 1", len(s.Groups))
		}
		// The script travels verbatim: the agent runs exactly what was submitted.
		if !slices.Contains(s.Groups[0].Command, string(data)) {
			t.Fatalf("command %q does not carry the script text", s.Groups[0].Command)
		}
		checkAccepted(t, &s)
	})
}

func FuzzValidateJSON(f *testing.F) {
	good, _ := json.Marshal(goodSpec())
	f.Add(good)
	limits := goodSpec()
	atLimits(&limits)
	b, _ := json.Marshal(limits)
	f.Add(b)
	for _, seed := range []string{
		`{"groups":[{"command":["x"]}]}`,
		`{"name":"a","queue":"Q","priority":2000000,"walltime":"-1s","max_retries":101,"groups":[{"name":"","count":-1,"resources":{"millicpu":-5,"memory_bytes":-1,"gpus":2000,"custom":{"gpu":1,"A B":-1}},"command":[""],"env":{"A=B":"\u0000"},"workdir":"rel","constraints":{"":"a b"}}]}`,
		`{"walltime": 3600, "groups":[{"name":"a","command":["x"]},{"name":"a","command":["y"]}]}`,
		`{"groups":[]}`,
		`{"owner":"a b","idempotency_key":"k","groups":null}`,
		`{"array":"0-99%5","dependencies":[{"type":"afterok","job":"12_3"}],"min_tasks":2,"topology":"rack","placement":"spread","groups":[{"count":4,"command":["x"]}]}`,
		`{"array":"5-1","dependencies":[{"type":"after","job":"0"}],"min_tasks":9,"topology":"a=b","placement":"x","groups":[{"command":["x"]}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		var s api.JobSpec
		if err := dec.Decode(&s); err != nil {
			return
		}
		checkAccepted(t, &s)
	})
}

// checkAccepted runs what the server runs on a decoded spec and, when
// Validate accepts it, checks every limit with a deliberately naive
// reference. It must never panic.
// FuzzSbatchArgs feeds dure sbatch's command line: argv words separated by
// NUL bytes, applied over a script with directives.
func FuzzSbatchArgs(f *testing.F) {
	for _, seed := range []string{
		"-J\x00x\x00-n\x004\x00-c\x002\x00-t\x0010:00\x00-p\x00gpu\x00job.sh",
		"-Jx\x00-n4\x00--time=1:00\x00--parsable\x00job.sh\x00-t\x005",
		"--wrap=echo hi\x00--mem-per-cpu=1G\x00-C\x00a=b",
		"--wrap\x00true\x00job.sh",
		"--gpus=3\x00--nice\x00--\x00-x.sh\x00--gpus",
		"--jobname\x00x",
		"-o\x00out\x00-N2\x00--addr",
	} {
		f.Add([]byte(seed))
	}
	script := []byte("#!/bin/sh\n#SBATCH -J s -n 2 --mem=1G --gpus=2 -C a=b\necho\n")
	own := map[string]bool{"--parsable": false, "--addr": true, "-h": false}
	f.Fuzz(func(t *testing.T, data []byte) {
		argv := strings.Split(string(data), "\x00")
		cl, err := SplitSbatchArgs(argv, own)
		if refused(t, err) {
			return
		}
		if cl.Script != "" {
			// The script and everything after it are the script's, untouched.
			n := len(cl.ScriptArgs) + 1
			if !slices.Equal(argv[len(argv)-n:], append([]string{cl.Script}, cl.ScriptArgs...)) {
				t.Fatalf("script %q args %q are not argv's tail %q", cl.Script, cl.ScriptArgs, argv)
			}
		}
		if cl.HasWrap && cl.Script != "" {
			t.Fatal("--wrap accepted with a script")
		}
		s, err := cl.Parse(script, "job.sh")
		if refused(t, err) {
			return
		}
		if len(s.Groups) != 1 {
			t.Fatalf("Parse made %d groups; want 1", len(s.Groups))
		}
		checkAccepted(t, &s)
	})
}

// refused reports whether a parse failed, failing the test if its error
// says nothing.
func refused(t *testing.T, err error) bool {
	t.Helper()
	if err != nil && err.Error() == "" {
		t.Fatal("empty error message")
	}
	return err != nil
}

func checkAccepted(t *testing.T, s *api.JobSpec) {
	t.Helper()
	Normalize(s)
	err := Validate(s)
	j := ToModel(s) // must not panic even on a spec Validate refused
	if err != nil {
		for _, fe := range err.(FieldErrors) {
			if fe.Message == "" {
				t.Fatalf("field error without a message: %+v", fe)
			}
		}
		return
	}
	if msg := naiveLimits(s); msg != "" {
		t.Fatalf("Validate accepted a spec that breaks a limit: %s\nspec: %+v", msg, s)
	}
	if j.TaskCount() < 1 || j.TaskCount() > MaxTasksPerJob {
		t.Fatalf("accepted job has %d tasks", j.TaskCount())
	}
}

// naiveLimits says which documented limit s breaks, or "". It is written
// independently of Validate, as plainly as possible.
func naiveLimits(s *api.JobSpec) string {
	okName := func(n string) bool {
		if len(n) < 1 || len(n) > 63 {
			return false
		}
		for i := 0; i < len(n); i++ {
			c := n[i]
			lowerOrDigit := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
			if i == 0 && !lowerOrDigit {
				return false
			}
			if !lowerOrDigit && c != '_' && c != '.' && c != '-' {
				return false
			}
		}
		return true
	}
	hasControl := func(x string) bool {
		for _, r := range x {
			if r < 0x20 || r == 0x7f {
				return true
			}
		}
		return !utf8.ValidString(x)
	}
	switch {
	case utf8.RuneCountInString(s.Name) > 128 || hasControl(s.Name):
		return "name"
	case !okName(s.Queue):
		return "queue"
	case s.Priority < -1000000 || s.Priority > 1000000:
		return "priority"
	case s.Walltime < 0 || time.Duration(s.Walltime) > 365*24*time.Hour:
		return "walltime"
	case s.MaxRetries < 0 || s.MaxRetries > 100:
		return "max_retries"
	case utf8.RuneCountInString(s.Owner) > 64 || strings.ContainsAny(s.Owner, " \t\n") || hasControl(s.Owner):
		return "owner"
	case utf8.RuneCountInString(s.IdempotencyKey) > 128:
		return "idempotency_key"
	case len(s.Groups) < 1 || len(s.Groups) > 64:
		return "groups"
	}
	b, _ := json.Marshal(s)
	if len(b) > 1<<20 {
		return "size"
	}
	total := 0
	names := map[string]bool{}
	for i, g := range s.Groups {
		p := "groups[" + strconv.Itoa(i) + "]"
		if !okName(g.Name) || names[g.Name] {
			return p + ".name"
		}
		names[g.Name] = true
		if g.Count < 1 || g.Count > 100000 {
			return p + ".count"
		}
		total += g.Count
		r := g.Resources
		switch {
		case r.MilliCPU < 1 || r.MilliCPU > 4096000:
			return p + ".millicpu"
		case r.MemoryBytes < 0 || r.MemoryBytes > 64<<40:
			return p + ".memory"
		case r.GPUs < 0 || r.GPUs > 1024:
			return p + ".gpus"
		case r.ScratchBytes < 0 || r.ScratchBytes > 64<<40:
			return p + ".scratch"
		}
		for k, v := range r.Custom {
			if !okName(k) || k == "gpu" || k == "cpu" || k == "memory" || k == "scratch" || v < 0 || v > 1e9 {
				return p + ".custom"
			}
		}
		if len(g.Command) == 0 || g.Command[0] == "" {
			return p + ".command"
		}
		for _, a := range g.Command {
			if len(a) >= 128*1024 || strings.Contains(a, "\x00") || !utf8.ValidString(a) {
				return p + ".command arg"
			}
		}
		for k, v := range g.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
				return p + ".env"
			}
		}
		if g.WorkDir != "" && !strings.HasPrefix(g.WorkDir, "/") {
			return p + ".workdir"
		}
		for k, v := range g.Constraints {
			if k == "" || len(k) > 253 || len(v) > 253 || strings.ContainsAny(k+v, "=, \t\n") || hasControl(k+v) {
				return p + ".constraints"
			}
		}
	}
	if total > 100000 {
		return "tasks per job"
	}
	if s.MinTasks < 0 || s.MinTasks > total {
		return "min_tasks"
	}
	if s.Placement != "" && s.Placement != "pack" && s.Placement != "spread" {
		return "placement"
	}
	if len(s.Topology) > 253 || strings.ContainsAny(s.Topology, "=, \t\n") || hasControl(s.Topology) {
		return "topology"
	}
	if s.Array != "" && naiveArraySize(s.Array) < 1 {
		return "array"
	}
	if len(s.Dependencies) > 100 {
		return "dependencies"
	}
	for _, d := range s.Dependencies {
		if d.Type != "afterok" && d.Type != "afterany" && d.Type != "afternotok" || !naiveJobRef.MatchString(d.Job) || strings.Trim(strings.Split(d.Job, "_")[0], "0") == "" {
			return "dependencies"
		}
	}
	return ""
}

var (
	naiveJobRef     = regexp.MustCompile(`^[0-9]{1,19}(_[0-9]{1,18})?$`)
	naiveArrayRange = regexp.MustCompile(`^([0-9]+)(-([0-9]+)(:([0-9]+))?)?$`)
)

// naiveArraySize counts the distinct indices of an --array text the plain
// way, or returns 0 if it breaks a documented rule.
func naiveArraySize(text string) int {
	text = strings.TrimSpace(text)
	if i := strings.Index(text, "%"); i >= 0 {
		n, err := strconv.Atoi(text[i+1:])
		if err != nil || n < 1 || strings.HasPrefix(text[i+1:], "+") {
			return 0
		}
		text = text[:i]
	}
	seen := map[int]bool{}
	written := 0
	for _, part := range strings.Split(text, ",") {
		m := naiveArrayRange.FindStringSubmatch(strings.TrimSpace(part))
		if m == nil {
			return 0
		}
		first, _ := strconv.Atoi(m[1])
		last, step := first, 1
		if m[3] != "" {
			last, _ = strconv.Atoi(m[3])
		}
		if m[5] != "" {
			step, _ = strconv.Atoi(m[5])
		}
		if first > 9999999 || last > 9999999 || last < first || step < 1 {
			return 0
		}
		for i := first; i <= last; i += step {
			if written++; written > 10000 {
				return 0
			}
			seen[i] = true
		}
	}
	return len(seen)
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1024", "512M", "4G", "4GiB", "1.5GB", "2T", "0.1K", "-1", "4 g", "", "8192P"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d; want no negative size", s, n)
		}
		// A plain byte count reads back as itself.
		if back, err := ParseSize(strconv.FormatInt(n, 10)); err != nil || back != n {
			t.Fatalf("ParseSize(%d) = %d, %v; want %d", n, back, err, n)
		}
	})
}

func FuzzParseCPU(f *testing.F) {
	for _, s := range []string{"2", "0.5", "500m", "1.25", "0", "-1", "0.0005", "abc", "9223372036854775807m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseCPU(s)
		if err != nil {
			return
		}
		if n <= 0 {
			t.Fatalf("ParseCPU(%q) = %d; want more than zero", s, n)
		}
		if back, err := ParseCPU(strconv.FormatInt(n, 10) + "m"); err != nil || back != n {
			t.Fatalf("ParseCPU(%dm) = %d, %v; want %d", n, back, err, n)
		}
	})
}

func FuzzParseWalltime(f *testing.F) {
	for _, s := range []string{"1h30m", "90", "10:30", "1:30:00", "1-12", "1-00:30", "2-03:04:05", "2d12h", "unlimited", "-1h", "1:75:00", "999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseWalltime(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseWalltime(%q) = %v; want no negative time", s, d)
		}
		// Go's own rendering of the result reads back as the same duration.
		if back, err := ParseWalltime(d.String()); err != nil || back != d {
			t.Fatalf("ParseWalltime(%q) = %v, %v; want %v", d.String(), back, err, d)
		}
	})
}
