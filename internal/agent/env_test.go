package agent

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/exec"
)

func TestTaskEnv(t *testing.T) {
	base := []string{"PATH=" + DefaultPath, "HOME=/home/dure", "LANG=C.UTF-8"}
	alloc := api.Allocation{
		ID: "42.3.1", JobID: 42, Group: "workers", TaskIndex: 3, Attempt: 1, TaskCount: 8, JobName: "train",
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    []string
		wantErr string
	}{
		{
			name: "base plus dure and Slurm variables, sorted",
			want: []string{
				"DURE_ALLOC_ID=42.3.1", "DURE_ATTEMPT=1", "DURE_GROUP=workers", "DURE_JOB_ID=42", "DURE_JOB_NAME=train",
				"DURE_NODE=node7", "DURE_NTASKS=8", "DURE_TASK_INDEX=3",
				"HOME=/home/dure", "LANG=C.UTF-8", "PATH=" + DefaultPath,
				"SLURM_JOBID=42", "SLURM_JOB_ID=42", "SLURM_JOB_NAME=train", "SLURM_NTASKS=8", "SLURM_PROCID=3",
			},
		},
		{
			name: "job env overrides the base but not what dure sets",
			env:  map[string]string{"PATH": "/opt/conda/bin:/usr/bin", "OMP_NUM_THREADS": "4", "DURE_JOB_ID": "7", "SLURM_PROCID": "0"},
			want: []string{
				"DURE_ALLOC_ID=42.3.1", "DURE_ATTEMPT=1", "DURE_GROUP=workers", "DURE_JOB_ID=42", "DURE_JOB_NAME=train",
				"DURE_NODE=node7", "DURE_NTASKS=8", "DURE_TASK_INDEX=3",
				"HOME=/home/dure", "LANG=C.UTF-8", "OMP_NUM_THREADS=4", "PATH=/opt/conda/bin:/usr/bin",
				"SLURM_JOBID=42", "SLURM_JOB_ID=42", "SLURM_JOB_NAME=train", "SLURM_NTASKS=8", "SLURM_PROCID=3",
			},
		},
		{name: "name with equals sign", env: map[string]string{"A=B": "x"}, wantErr: `variable name "A=B"`},
		{name: "empty name", env: map[string]string{"": "x"}, wantErr: `variable name ""`},
		{name: "NUL in value", env: map[string]string{"A": "x\x00y"}, wantErr: "env[A]: value must not contain NUL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := alloc
			a.Env = tc.env
			got, err := taskEnv(base, "node7", &a)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("taskEnv error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("taskEnv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTaskEnvOfArrayElement(t *testing.T) {
	// Element 7 of array 120 is job 127; the job cannot override the array's variables.
	a := &api.Allocation{ID: "127.0.1", JobID: 127, TaskCount: 1, ArrayJobID: 120, ArrayTaskID: 7, Env: map[string]string{"SLURM_ARRAY_TASK_ID": "0"}}
	got, err := taskEnv(nil, "n", a)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DURE_ARRAY_JOB_ID=120", "DURE_ARRAY_TASK_ID=7", "SLURM_ARRAY_JOB_ID=120", "SLURM_ARRAY_TASK_ID=7", "DURE_JOB_ID=127"} {
		if !slices.Contains(got, want) {
			t.Errorf("env %q lacks %s", got, want)
		}
	}
	// Index 0 is an index like any other.
	a.ArrayTaskID = 0
	if got, _ := taskEnv(nil, "n", a); !slices.Contains(got, "DURE_ARRAY_TASK_ID=0") {
		t.Errorf("element 0: env %q lacks DURE_ARRAY_TASK_ID=0", got)
	}
	// A job that is not an array element gets none of them.
	got, _ = taskEnv(nil, "n", &api.Allocation{ID: "1.0.1", JobID: 1})
	for _, kv := range got {
		if strings.Contains(kv, "ARRAY") {
			t.Errorf("a plain job got %s", kv)
		}
	}
}

func TestTaskEnvSingleTaskJobHasOneTask(t *testing.T) {
	// Allocations from before TaskCount existed carry 0; a task is at least one.
	got, err := taskEnv(nil, "n", &api.Allocation{ID: "1.0.0", JobID: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DURE_NTASKS=1", "SLURM_NTASKS=1"} {
		if !slices.Contains(got, want) {
			t.Errorf("env %q lacks %s", got, want)
		}
	}
}

func TestDefaultBaseEnv(t *testing.T) {
	env := DefaultBaseEnv()
	if !slices.Contains(env, "PATH="+DefaultPath) || !slices.Contains(env, "LANG=C.UTF-8") {
		t.Errorf("DefaultBaseEnv() = %q, want PATH=%s and LANG=C.UTF-8", env, DefaultPath)
	}
	home := false
	for _, kv := range env {
		if strings.HasPrefix(kv, "HOME=/") {
			home = true
		}
	}
	if !home {
		t.Errorf("DefaultBaseEnv() = %q, want an absolute HOME", env)
	}
}

func TestTaskSpec(t *testing.T) {
	cfg := Config{Name: "n1", BaseEnv: []string{"PATH=/bin"}, KillGrace: 3 * time.Second}
	a := &api.Allocation{
		ID: "9.0.0", JobID: 9, Command: []string{"python", "train.py"}, WorkDir: "/data",
		Resources: api.Resources{MilliCPU: 1500, MemoryBytes: 2 << 30, GPUs: 2}, GPUIndices: []int{2, 5},
		Walltime: api.Duration(time.Hour),
	}
	got, err := taskSpec(&cfg, a)
	if err != nil {
		t.Fatal(err)
	}
	got.Env = nil // checked in TestTaskEnv
	want := exec.TaskSpec{
		ID: "9.0.0", Command: []string{"python", "train.py"}, WorkDir: "/data",
		MilliCPU: 1500, MemoryBytes: 2 << 30, GPUIndices: []int{2, 5}, Walltime: time.Hour, KillGrace: 3 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("taskSpec (-want +got):\n%s", diff)
	}
	if _, err := taskSpec(&cfg, &api.Allocation{ID: "9.0.1"}); err == nil || !strings.Contains(err.Error(), "command: empty") {
		t.Errorf("taskSpec with no command: error = %v, want \"command: empty\"", err)
	}
}

func TestExitMessage(t *testing.T) {
	tests := []struct {
		name     string
		res      exec.Result
		mem      int64
		walltime time.Duration
		reason   string
		want     string
	}{
		{name: "success", res: exec.Result{}, want: "exited with code 0"},
		{name: "failure", res: exec.Result{ExitCode: 3}, want: "exited with code 3"},
		{name: "OOM with a limit", res: exec.Result{ExitCode: 137, Signal: "SIGKILL", OOMKilled: true}, mem: 64 << 20, want: "killed by SIGKILL after exceeding memory limit 64MiB"},
		{name: "OOM of a child, the task exited itself", res: exec.Result{ExitCode: 3, OOMKilled: true}, mem: 64 << 20, want: "exited with code 3 after the OOM killer killed a process of the task (memory limit 64MiB)"},
		{name: "OOM of a child, a shell passed on 137", res: exec.Result{ExitCode: 137, OOMKilled: true}, want: "exited with code 137 after the OOM killer killed a process of the task"},
		{name: "OOM with a fractional limit", res: exec.Result{OOMKilled: true}, mem: 1536 << 20, want: "killed by SIGKILL after exceeding memory limit 1.5GiB"},
		{name: "OOM without a limit", res: exec.Result{OOMKilled: true, Signal: "SIGKILL"}, want: "killed by SIGKILL: out of memory"},
		{name: "walltime", res: exec.Result{TimedOut: true, Signal: "SIGTERM", ExitCode: 143}, walltime: 10 * time.Second, want: "walltime 10s exceeded"},
		{name: "stopped with reason", res: exec.Result{Stopped: true, Signal: "SIGTERM"}, reason: "cancelled by alice", want: "stopped: cancelled by alice"},
		{name: "stopped without reason", res: exec.Result{Stopped: true, Signal: "SIGTERM"}, want: "stopped"},
		{name: "signal", res: exec.Result{Signal: "SIGSEGV", ExitCode: 139}, want: "killed by SIGSEGV"},
		{name: "start error", res: exec.Result{StartErr: "exec: \"nope\": executable file not found in $PATH", ExitCode: 127}, want: "exec: \"nope\": executable file not found in $PATH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitMessage(tc.res, tc.mem, tc.walltime, tc.reason); got != tc.want {
				t.Errorf("exitMessage = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 512: "512B", 1024: "1KiB", 64 << 20: "64MiB", 1536 << 20: "1.5GiB", 81559 << 20: "79.6GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
