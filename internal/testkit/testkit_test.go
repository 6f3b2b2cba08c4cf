package testkit

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
)

func TestBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1024", 1024},
		{"512M", 512 << 20},
		{"16G", 16 << 30},
		{"16GiB", 16 << 30},
		{"16Gi", 16 << 30},
		{"1.5G", 3 << 29},
		{"2t", 2 << 40},
		{"1K", 1024},
		{" 8G ", 8 << 30},
	}
	for _, tc := range tests {
		if got := Bytes(tc.in); got != tc.want {
			t.Errorf("Bytes(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestBytesRejectsNonsense(t *testing.T) {
	for _, in := range []string{"", "G", "12X", "-1G", "1..2G"} {
		_, err := parseBytes(in)
		if err == nil {
			t.Errorf("parseBytes(%q) = nil error, want one", in)
		}
	}
	defer func() {
		r := recover()
		if msg, _ := r.(string); !strings.Contains(msg, `testkit.Bytes("12X")`) || !strings.Contains(msg, `unknown unit "X"`) {
			t.Errorf("panic = %v, want it to name the call and the unit", r)
		}
	}()
	Bytes("12X")
}

func TestNodeBuilder(t *testing.T) {
	got := Node("g1").CPU(8).Mem("16G").GPUs(2).GPUModel("A100").Label("pool", "gpu").Scratch("100G").Custom("fpga", 1).Build()
	want := &model.Node{
		Name:    "g1",
		Address: "127.0.0.1:0",
		Capacity: model.Resources{
			MilliCPU: 8000, MemoryBytes: 16 << 30, GPUs: 2, ScratchBytes: 100 << 30,
			Custom: map[string]int64{"fpga": 1},
		},
		GPUs: []model.GPU{
			{Index: 0, UUID: "GPU-g1-0", Model: "A100", MemoryBytes: 80 << 30},
			{Index: 1, UUID: "GPU-g1-1", Model: "A100", MemoryBytes: 80 << 30},
		},
		Labels:          map[string]string{"pool": "gpu"},
		Status:          model.NodeReady,
		RegisteredAt:    Epoch,
		StatusChangedAt: Epoch,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Node builder (-want +got):\n%s", diff)
	}
	if !got.Schedulable() {
		t.Errorf("a fresh node should be schedulable")
	}
	if Node("d").Down().Build().Schedulable() || Node("d").Drain("x").Build().Schedulable() {
		t.Errorf("down and draining nodes must not be schedulable")
	}
}

func TestBuildReturnsIndependentCopies(t *testing.T) {
	nb := Node("n").Label("a", "1")
	n1 := nb.Build()
	n1.Labels["a"] = "changed"
	if got := nb.Build().Labels["a"]; got != "1" {
		t.Errorf("changing a built node changed the builder: label a = %q", got)
	}
	jb := Job(1).Env("K", "v")
	j1 := jb.Build()
	j1.Groups[0].Env["K"] = "changed"
	if got := jb.Build().Groups[0].Env["K"]; got != "v" {
		t.Errorf("changing a built job changed the builder: env K = %q", got)
	}
}

func TestJobBuilder(t *testing.T) {
	at := Epoch.Add(time.Hour)
	got := Job(7).Tasks(4).CPU(2).GPUs(1).Queue("q").Priority(5).Submitted(at).Build()
	want := &model.Job{
		ID: 7, Name: "job7", Owner: "tester", Queue: "q", Priority: 5,
		State:      model.JobPending,
		Reason:     model.Reason{Code: model.ReasonNewJob, Message: "submitted; not yet scheduled"},
		SubmitTime: at,
		Groups: []model.TaskGroup{{
			Name: "main", Count: 4, Command: []string{"true"},
			Resources: model.Resources{MilliCPU: 2000, MemoryBytes: 1 << 30, GPUs: 1},
		}},
		Events: []model.Event{{Time: at, Type: "submitted", Message: "job submitted"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Job builder (-want +got):\n%s", diff)
	}
}

func TestJobGroups(t *testing.T) {
	got := Job(1).Group("ps").CPU(4).Group("worker").Tasks(3).Constraint("pool", "gpu").Build()
	if len(got.Groups) != 2 || got.Groups[0].Name != "ps" || got.Groups[1].Name != "worker" {
		t.Fatalf("groups = %+v, want ps then worker", got.Groups)
	}
	if got.Groups[0].Resources.MilliCPU != 4000 || got.Groups[1].Resources.MilliCPU != 1000 {
		t.Errorf("per-group cpu = %d, %d; want 4000 (set) and 1000 (default)", got.Groups[0].Resources.MilliCPU, got.Groups[1].Resources.MilliCPU)
	}
	if got.TaskCount() != 4 {
		t.Errorf("TaskCount = %d, want 4", got.TaskCount())
	}
	if diff := cmp.Diff(map[string]string{"pool": "gpu"}, got.Groups[1].Constraints); diff != "" {
		t.Errorf("constraints on the current group only (-want +got):\n%s", diff)
	}
	if got.Groups[0].Constraints != nil {
		t.Errorf("constraint leaked into the first group: %v", got.Groups[0].Constraints)
	}
}

func TestDefaultSubmitOrderIsIDOrder(t *testing.T) {
	if a, b := Job(1).Build(), Job(2).Build(); !a.SubmitTime.Before(b.SubmitTime) {
		t.Errorf("job 1 submitted at %v, job 2 at %v; want job 1 first", a.SubmitTime, b.SubmitTime)
	}
}

func TestAllocBuilder(t *testing.T) {
	got := Alloc(3, 1, "g1").CPU(2).Mem("4G").GPUIndices(0, 3).Attempt(2).Status(model.AllocAssigned).Build()
	want := &model.Allocation{
		ID: "3.1.2", JobID: 3, Group: "main", TaskIndex: 1, Attempt: 2, Node: "g1",
		Resources:  model.Resources{MilliCPU: 2000, MemoryBytes: 4 << 30, GPUs: 2},
		GPUIndices: []int{0, 3},
		Command:    []string{"true"},
		TaskCount:  2,
		Desired:    model.DesiredRun,
		Status:     model.AllocAssigned,
		CreatedAt:  Epoch,
		StartedAt:  Epoch,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Alloc builder (-want +got):\n%s", diff)
	}
}

func TestBuilderPanicsNameTheMethod(t *testing.T) {
	defer func() {
		if msg, _ := recover().(string); !strings.Contains(msg, "Job.Tasks(-1)") {
			t.Errorf("panic %q should name Job.Tasks and the value", msg)
		}
	}()
	Job(1).Tasks(-1)
}

func TestQueueBuilder(t *testing.T) {
	got := NewQueue("vision").Parent("research").Weight(2).Quota("gpu", 16).Borrow(8).Lend(4).Quota("cpu", 64000).
		DefaultWalltime(time.Hour).Members("ann", "bob").Build()
	b, l := int64(8), int64(4)
	want := &model.Queue{
		Name: "vision", Parent: "research", Weight: 2,
		Quotas: []model.Quota{
			{Resource: "gpu", Nominal: 16, BorrowingLimit: &b, LendingLimit: &l},
			{Resource: "cpu", Nominal: 64000},
		},
		DefaultWalltime: time.Hour,
		Members:         []string{"ann", "bob"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Queue builder (-want +got):\n%s", diff)
	}
	// Copies are independent, limits included.
	*got.Quotas[0].BorrowingLimit = 99
	if again := NewQueue("q").Quota("gpu", 1).Borrow(8).Build(); *again.Quotas[0].BorrowingLimit != 8 {
		t.Errorf("borrowing limit shared between builds")
	}
}

func TestQueueBuilderNeedsAQuotaBeforeLimits(t *testing.T) {
	defer func() {
		if msg, _ := recover().(string); !strings.Contains(msg, "Queue.Borrow: call Quota first") {
			t.Errorf("panic %q should say to call Quota first", msg)
		}
	}()
	NewQueue("q").Borrow(1)
}

func TestJobBuilderSchedulingFields(t *testing.T) {
	got := Job(5).Tasks(8).MinTasks(2).Topology("rack").Spread().After(model.AfterOK, 3).ArrayElement(4, 1, 50).Build()
	if got.MinTasks != 2 || got.Topology != "rack" || got.Placement != model.PlacementSpread || got.ArrayParent != 4 || got.ArrayIndex != 1 || got.ArrayThrottle != 50 {
		t.Errorf("scheduling fields not set: %+v", got)
	}
	if diff := cmp.Diff([]model.Dependency{{Type: model.AfterOK, JobID: 3}}, got.Dependencies); diff != "" {
		t.Errorf("dependencies (-want +got):\n%s", diff)
	}
	if got.GangSize() != 2 {
		t.Errorf("GangSize = %d, want 2", got.GangSize())
	}
}
