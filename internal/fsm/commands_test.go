package fsm_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/durehq/dure/internal/fsm"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/testkit"
)

var t0 = testkit.Epoch

// sampleCommands has one command of every type with every field set, so a
// field that does not survive encoding shows up in the round trip.
func sampleCommands() []fsm.Command {
	node := testkit.Node("gpu-01").CPU(64).Mem("512G").GPUs(2).Scratch("1T").Custom("license", 4).
		Label("pool", "gpu").Address("10.0.0.7:7072").Build()
	node.AgentVersion, node.SessionID = "v1.2.3", "sess-1"
	job := testkit.Job(42).Name("train").Owner("ada").Queue("gpu").Priority(5).Walltime(90*time.Minute).MaxRetries(2).
		Group("workers").Tasks(4).CPU(8).Mem("64G").GPUs(1).Env("NCCL_DEBUG", "INFO").Constraint("pool", "gpu").
		Command("python", "train.py", "--epochs=3").Group("ps").Tasks(1).Custom("license", 1).Build()
	job.IdempotencyKey = "nightly-2025-01-01"
	job.MinTasks, job.Topology, job.Placement = 2, "rack", model.PlacementSpread
	job.Dependencies = []model.Dependency{{Type: model.AfterOK, JobID: 7}, {Type: model.AfterAny, JobID: 3, Array: true}}
	alloc := testkit.Alloc(42, 3, "gpu-01").CPU(8).Mem("64G").GPUIndices(1).Group("workers").TaskCount(5).Build()
	alloc.Env = map[string]string{"A": "1"}
	alloc.WorkDir, alloc.Walltime, alloc.JobName, alloc.Owner = "/scratch", time.Hour, "train", "ada"
	return []fsm.Command{
		&fsm.RegisterNode{Time: t0, Node: *node},
		&fsm.NodeStatus{Time: t0.Add(time.Second), Name: "gpu-01", Status: model.NodeDown, Reason: "no heartbeat for 10s"},
		&fsm.DrainNode{Time: t0, Name: "gpu-01", Drain: true, Reason: "firmware update"},
		&fsm.SubmitJob{Job: *job},
		&fsm.SubmitJob{Job: *job, Array: &model.Array{Ranges: []model.ArrayRange{{First: 0, Last: 15, Step: 4}, {First: 20, Last: 20}}, Throttle: 3}},
		&fsm.CancelArray{Time: t0, ArrayID: 42, Reason: "by user request"},
		&fsm.CancelJob{Time: t0, ID: 42, Reason: "by user request"},
		&fsm.CommitPlan{Time: t0, Term: 3,
			Jobs:    []fsm.PlannedJob{{JobID: 42, Allocs: []model.Allocation{*alloc}}},
			Reasons: []fsm.JobReason{{JobID: 43, Reason: model.Reason{Code: model.ReasonResources, Message: "needs 8 GPUs; 2 free"}}},
			Preemptions: []fsm.PlannedPreemption{{JobID: 40, AllocIDs: []string{"40.0.1", "40.1.1"}, Preemptor: 43, Grace: 30 * time.Second,
				Reason: model.Reason{Code: model.ReasonPreempted, Message: "preempted by job 43 of higher priority (5 > 0) in queue gpu"}}}},
		&fsm.AllocUpdates{Time: t0, Updates: []fsm.AllocUpdate{
			{AllocID: "42.3.1", Node: "gpu-01", Status: model.AllocRunning, StartedAt: t0},
			{AllocID: "42.2.1", Node: "gpu-01", Status: model.AllocExited, ExitCode: 137, Signal: "SIGKILL", OOMKilled: true,
				TimedOut: true, Stopped: true, Message: "killed", StartedAt: t0, FinishedAt: t0.Add(time.Minute)},
		}},
		&fsm.PruneJobs{IDs: []model.JobID{1, 2, 3}},
		&fsm.UpsertQueue{Queue: model.Queue{Name: "gpu", Description: "GPU work", CreateIndex: 4, ModifyIndex: 9}},
		&fsm.SubmitJobs{Jobs: []model.Job{*job, *testkit.Job(43).Owner("ada").Build()}},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	seen := map[fsm.Type]bool{}
	for _, c := range sampleCommands() {
		b, err := fsm.Encode(c)
		if err != nil {
			t.Fatalf("Encode(%T): %v", c, err)
		}
		if b[0] != 1 || fsm.Type(b[1]) != c.Type() {
			t.Errorf("%T encodes with header %v; want [1 %d]", c, b[:2], c.Type())
		}
		got, err := fsm.Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%T)): %v", c, err)
		}
		if diff := cmp.Diff(c, got); diff != "" {
			t.Errorf("%T round trip (-sent +decoded):\n%s", c, diff)
		}
		seen[c.Type()] = true
	}
	// A new command type must be added to sampleCommands (and Decode).
	for typ := fsm.Type(1); typ <= 32; typ++ {
		_, err := fsm.Decode([]byte{1, byte(typ), '{', '}'})
		known := err == nil
		if known != seen[typ] {
			t.Errorf("type %d: Decode knows it = %v, round-trip test covers it = %v", typ, known, seen[typ])
		}
	}
}

// The numbers are in every log ever written: they must never change.
func TestTypeNumbersAreStable(t *testing.T) {
	got := map[string]fsm.Type{}
	for _, c := range sampleCommands() {
		got[strings.TrimPrefix(fmt.Sprintf("%T", c), "*fsm.")] = c.Type()
	}
	want := map[string]fsm.Type{
		"RegisterNode": 1, "NodeStatus": 2, "DrainNode": 3, "SubmitJob": 4, "CancelJob": 5,
		"CommitPlan": 6, "AllocUpdates": 7, "PruneJobs": 8, "UpsertQueue": 9, "CancelArray": 11, "SubmitJobs": 12,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("command type numbers changed (-want +got):\n%s", diff)
	}
}

func TestDecodeRejectsBadEntries(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "0 bytes, want at least 2"},
		{"one byte", []byte{1}, "1 bytes, want at least 2"},
		{"encoding version zero", []byte{0, 4, '{', '}'}, "encoding version 0, want 1"},
		{"newer encoding version", []byte{2, 4, '{', '}'}, "encoding version 2, this dure knows up to 1: written by a newer version of dure"},
		{"type zero", []byte{1, 0, '{', '}'}, "unknown command type 0"},
		{"unknown type", []byte{1, 200, '{', '}'}, "unknown command type 200: written by a newer version of dure"},
		{"no payload", []byte{1, 4}, "type 4: unexpected end of JSON input"},
		{"malformed JSON", append([]byte{1, 5}, `{"id":`...), "type 5: unexpected end of JSON input"},
		{"wrong field type", append([]byte{1, 5}, `{"id":"seven"}`...), "type 5: json: cannot unmarshal string"},
		{"trailing data", append([]byte{1, 8}, `{"ids":[1]} {}`...), "type 8: invalid character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := fsm.Decode(tc.data)
			if !errors.Is(err, fsm.ErrBadEntry) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, %v; want ErrBadEntry containing %q", c, err, tc.want)
			}
		})
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts re-encodes to an
// entry that decodes to the same command.
func FuzzDecode(f *testing.F) {
	for _, c := range sampleCommands() {
		b, err := fsm.Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1, 4, 'n', 'u', 'l', 'l'})
	f.Add([]byte{1, 7, '{', '}'})
	f.Add(append([]byte{1, 1}, `{"NODE":{"name":"a\ud800","labels":{}},"time":"2025-01-01T00:00:00+05:30"}`...))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := fsm.Decode(data)
		if err != nil {
			if !errors.Is(err, fsm.ErrBadEntry) {
				t.Fatalf("Decode error %v is not ErrBadEntry", err)
			}
			return
		}
		b, err := fsm.Encode(c)
		if err != nil {
			t.Fatalf("a decoded %T does not encode: %v", c, err)
		}
		again, err := fsm.Decode(b)
		if err != nil {
			t.Fatalf("re-encoded %T does not decode: %v\n%s", c, err, b)
		}
		if diff := cmp.Diff(c, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("decode → encode → decode changed the command (-first +second):\n%s", diff)
		}
	})
}
