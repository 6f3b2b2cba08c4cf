package exec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidateSpec(t *testing.T) {
	ok := TaskSpec{ID: "a.b_c-1", Command: []string{"true"}}
	tests := []struct {
		name    string
		mutate  func(*TaskSpec)
		wantErr string // "" = valid
	}{
		{"valid", func(*TaskSpec) {}, ""},
		{"empty ID", func(s *TaskSpec) { s.ID = "" }, "TaskSpec.ID: must not be empty"},
		{"ID with slash", func(s *TaskSpec) { s.ID = "a/b" }, "TaskSpec.ID: must match"},
		{"ID dot-dot", func(s *TaskSpec) { s.ID = ".." }, "TaskSpec.ID: must not be"},
		{"ID of the runner's own log", func(s *TaskSpec) { s.ID = "supervisor.log" }, "TaskSpec.ID: must not be"},
		{"ID too long", func(s *TaskSpec) { s.ID = strings.Repeat("x", 201) }, "TaskSpec.ID: must be at most 200"},
		{"no command", func(s *TaskSpec) { s.Command = nil }, "TaskSpec.Command: must name a program"},
		{"empty program", func(s *TaskSpec) { s.Command = []string{""} }, "TaskSpec.Command: must name a program"},
		{"NUL in argument", func(s *TaskSpec) { s.Command = []string{"echo", "a\x00b"} }, "TaskSpec.Command[1]: must not contain a NUL"},
		{"env without =", func(s *TaskSpec) { s.Env = []string{"A=1", "B"} }, "TaskSpec.Env[1]: must be KEY=VALUE"},
		{"env with empty key", func(s *TaskSpec) { s.Env = []string{"=x"} }, "TaskSpec.Env[0]: must be KEY=VALUE"},
		{"negative CPU", func(s *TaskSpec) { s.MilliCPU = -1 }, "TaskSpec.MilliCPU: must be >= 0"},
		{"absurd CPU", func(s *TaskSpec) { s.MilliCPU = 1 << 40 }, "TaskSpec.MilliCPU: must be <="},
		{"negative memory", func(s *TaskSpec) { s.MemoryBytes = -1 }, "TaskSpec.MemoryBytes: must be >= 0"},
		{"negative GPU", func(s *TaskSpec) { s.GPUIndices = []int{0, -2} }, "TaskSpec.GPUIndices[1]: must be >= 0"},
		{"negative walltime", func(s *TaskSpec) { s.Walltime = -time.Second }, "TaskSpec.Walltime: must be >= 0"},
		{"negative grace", func(s *TaskSpec) { s.KillGrace = -time.Second }, "TaskSpec.KillGrace: must be >= 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			s.Command = append([]string(nil), ok.Command...)
			tt.mutate(&s)
			err := validateSpec(s)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStartRejectsInvalidSpec(t *testing.T) {
	h := newHarness(t, SupervisorNode, cgroupOff, false)
	if _, err := h.r.Start(TaskSpec{ID: "x", MilliCPU: -5, Command: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "MilliCPU") {
		t.Errorf("Start = %v, want a MilliCPU error", err)
	}
	if exists(filepath.Join(h.r.dir, "x")) {
		t.Error("a rejected spec left a task directory")
	}
}

func TestNewRunnerRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	sup := supervisorCommand(t)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no dir", Config{SupervisorCommand: sup}, "Config.Dir: must be set"},
		{"no supervisor", Config{Dir: dir}, "Config.SupervisorCommand: must name"},
		{"missing supervisor binary", Config{Dir: dir, SupervisorCommand: []string{"no-such-dure-binary"}}, "Config.SupervisorCommand: exec: \"no-such-dure-binary\""},
		{"bad cgroup mode", Config{Dir: dir, SupervisorCommand: sup, Cgroups: "v3"}, "Config.Cgroups: must be auto, v1, v2 or off"},
		{"absolute cgroup parent", Config{Dir: dir, SupervisorCommand: sup, Cgroups: "off", CgroupParent: "/dure"}, "Config.CgroupParent: must be relative"},
		{"cgroup parent escaping", Config{Dir: dir, SupervisorCommand: sup, Cgroups: "off", CgroupParent: "a/../../b"}, "Config.CgroupParent: each path element"},
		{"bad supervisor mode", Config{Dir: dir, SupervisorCommand: sup, Cgroups: "off", Supervisor: "pod"}, `Config.Supervisor: must be "node" or "task", got "pod"`},
		// A "supervisor" that exits without saying anything.
		{"daemon that never starts", Config{Dir: dir, SupervisorCommand: []string{"true"}, Cgroups: "off"}, "supervisor daemon failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRunner(tt.cfg)
			if err == nil {
				r.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("tool", 0o755)
	write("data", 0o644)
	if err := os.Mkdir(filepath.Join(bin, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, prog string
		env        []string
		want       string // "" = not found
	}{
		{"found in the task's PATH", "tool", []string{"PATH=/nonexistent:" + bin}, filepath.Join(bin, "tool")},
		{"relative PATH entry is relative to the work dir", "tool", []string{"PATH=bin"}, filepath.Join(bin, "tool")},
		{"not executable is skipped", "data", []string{"PATH=" + bin}, ""},
		{"directory is skipped", "adir", []string{"PATH=" + bin}, ""},
		{"absent", "nothing", []string{"PATH=" + bin}, ""},
		{"a path is taken as is", "./x/y", []string{"PATH=" + bin}, "./x/y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lookPath(tt.prog, tt.env, dir)
			if tt.want == "" {
				if err == nil {
					t.Errorf("found %q, want not found", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseMountinfo(t *testing.T) {
	data := []byte(`31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
41 31 0:38 / /sys/fs/my\040cgroup2 rw,relatime - cgroup2 cgroup2 rw
bad line
`)
	got := parseMountinfo(data)
	want := []mount{
		{root: "/", point: "/sys/fs/cgroup/cpu,cpuacct", fstype: "cgroup", options: []string{"rw", "cpu", "cpuacct"}},
		{root: "/docker/abc", point: "/sys/fs/cgroup/memory", fstype: "cgroup", options: []string{"rw", "memory"}},
		{root: "/", point: "/sys/fs/cgroup/cpuset", fstype: "cgroup", options: []string{"rw", "cpuset"}},
		{root: "/", point: "/sys/fs/my cgroup2", fstype: "cgroup2", options: []string{"rw"}},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(mount{})); diff != "" {
		t.Fatalf("parseMountinfo (-want +got):\n%s", diff)
	}
	if p, _ := v1MountFor(got, "cpu"); p != "/sys/fs/cgroup/cpu,cpuacct" {
		t.Errorf("cpu hierarchy = %q (cpuset must not match cpu)", p)
	}
	if p, _ := v2Mount(got); p != "/sys/fs/my cgroup2" {
		t.Errorf("v2 mount = %q", p)
	}
	self := []byte("4:memory:/docker/abc/inner\n2:cpu,cpuacct:/user.slice\n0::/\n")
	tests := []struct {
		controller, want string
		ok               bool
	}{
		{"cpu", "/sys/fs/cgroup/cpu,cpuacct/user.slice", true},
		{"memory", "/sys/fs/cgroup/memory/inner", true}, // mount root /docker/abc stripped
		{"pids", "", false},
	}
	for _, tt := range tests {
		got, ok := ownV1Cgroup(parseMountinfo(data), self, tt.controller)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ownV1Cgroup(%s) = %q, %v; want %q, %v", tt.controller, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseKeyedCounter(t *testing.T) {
	tests := []struct {
		name string
		data string
		want int64
		ok   bool
	}{
		{"v2 memory.events", "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n", 2, true},
		{"v1 memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", 0, true},
		{"old kernel without the counter", "oom_kill_disable 0\nunder_oom 0\n", 0, false},
		{"garbage value", "oom_kill x\n", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseKeyedCounter([]byte(tt.data), "oom_kill")
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: got %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCPUQuota(t *testing.T) {
	for _, tt := range []struct{ milli, want int64 }{{1000, 100000}, {250, 25000}, {10, 1000}, {3, 1000}, {64000, 6400000}} {
		if got := cpuQuotaUS(tt.milli); got != tt.want {
			t.Errorf("cpuQuotaUS(%d) = %d, want %d", tt.milli, got, tt.want)
		}
	}
}

func TestTaskEnvReplacesOurVariables(t *testing.T) {
	got := taskEnv([]string{"A=1", "CUDA_VISIBLE_DEVICES=3", "DURE_SCRATCH=/x", "B=2"}, "/s", []int{4, 5})
	want := []string{"A=1", "B=2", "DURE_SCRATCH=/s", "CUDA_VISIBLE_DEVICES=4,5", "NVIDIA_VISIBLE_DEVICES=4,5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("taskEnv (-want +got):\n%s", diff)
	}
}

func TestParseStatStartTime(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want uint64
		ok   bool
	}{
		{"plain", "1234 (sh) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 2621440", 98765, true},
		{"command with spaces and parentheses", "7 (a) (b c) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0", 42, true},
		{"truncated", "7 (x) R 1 2 3", 0, false},
		{"no command", "garbage", 0, false},
	}
	for _, tt := range tests {
		got, err := parseStatStartTime([]byte(tt.stat))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: got %d, %v; want %d, ok=%v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

func TestDecodeJournal(t *testing.T) {
	rec := func(op, id string, pid int) string {
		r := journalRecord{Op: op, ID: id}
		if op == journalRun {
			r.Pid, r.Cgroup = pid, &cgroupSpec{Driver: cgroupOff}
		}
		data, _ := json.Marshal(r)
		return string(data) + "\n"
	}
	data := rec(journalRun, "a", 10) + rec(journalRun, "b", 11) + rec(journalEnd, "a", 0) +
		rec(journalRun, "c", 12) + rec(journalRun, "b", 13) + // b again: the later record wins
		"junk\n" + `{"op":"run","id":"d","pid":14` // torn last line
	live, bad := decodeJournal([]byte(data))
	var got []string
	for _, r := range live {
		got = append(got, r.ID+":"+strconv.Itoa(r.Pid))
	}
	if diff := cmp.Diff([]string{"b:13", "c:12"}, got); diff != "" || bad != 2 {
		t.Errorf("live (-want +got):\n%s\nbad lines = %d, want 2", diff, bad)
	}
}
