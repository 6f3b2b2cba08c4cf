package cli

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/api"
)

func cannedNodes() []api.Node {
	return []api.Node{
		{Name: "gpu1", Address: "10.0.0.11:7071", State: "ready", Status: "ready",
			Capacity: api.Resources{MilliCPU: 64000, MemoryBytes: 512 << 30, GPUs: 8},
			Used:     api.Resources{MilliCPU: 16500, MemoryBytes: 96 << 30, GPUs: 4},
			GPUs:     []api.GPU{{Index: 0, Model: "H100", MemoryBytes: 80 << 30, UUID: "GPU-aaaa"}, {Index: 1, Model: "H100", MemoryBytes: 80 << 30, UUID: "GPU-bbbb"}},
			Labels:   map[string]string{"pool": "gpu", "gpu.model": "H100"}, Allocations: 3,
			RegisteredAt: t0.Add(-48 * time.Hour), LastSeen: t0.Add(-2 * time.Second), AgentVersion: "0.1.0"},
		{Name: "n1", Address: "10.0.0.1:7071", State: "draining", Status: "ready", Drain: true, DrainReason: "disk swap",
			Capacity: api.Resources{MilliCPU: 2000, MemoryBytes: 3 << 29},
			Used:     api.Resources{MilliCPU: 1000, MemoryBytes: 256 << 20}, Allocations: 1,
			RegisteredAt: t0.Add(-time.Hour), LastSeen: t0.Add(-1 * time.Second), AgentVersion: "0.1.0"},
		{Name: "n2", Address: "10.0.0.2:7071", State: "down", Status: "down", StatusReason: "missed heartbeats for 30s",
			Capacity:     api.Resources{MilliCPU: 2000, MemoryBytes: 2 << 30},
			RegisteredAt: t0.Add(-time.Hour), LastSeen: t0.Add(-45 * time.Second)},
	}
}

func TestRenderNodes(t *testing.T) {
	var b bytes.Buffer
	renderNodes(&b, cannedNodes(), t0, false)
	want := `NAME  STATE     CPU      MEM            GPU  ALLOCS  LABELS
gpu1  ready     16.5/64  96GiB/512GiB   4/8  3       gpu.model=H100,pool=gpu
n1    draining  1/2      256MiB/1.5GiB  0/0  1       -
n2    down      0/2      0B/2GiB        0/0  0       -
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	b.Reset()
	renderNodes(&b, cannedNodes()[1:], t0, true)
	want = `NAME  STATE     CPU  MEM            GPU  ALLOCS  LABELS  ADDRESS        LAST SEEN  VERSION  REASON
n1    draining  1/2  256MiB/1.5GiB  0/0  1       -       10.0.0.1:7071  1s ago     0.1.0    disk swap
n2    down      0/2  0B/2GiB        0/0  0       -       10.0.0.2:7071  45s ago    -        missed heartbeats for 30s
`
	if got := b.String(); got != want {
		t.Errorf("wide table:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderNode(t *testing.T) {
	var b bytes.Buffer
	n := cannedNodes()[0]
	renderNode(&b, &n, t0, time.UTC)
	want := `Name:         gpu1
State:        ready
Status:       ready
Drain:        no
Address:      10.0.0.11:7071
Version:      0.1.0
Registered:   2025-02-27 14:00:00 (2d ago)
Last seen:    2025-03-01 13:59:58 (2s ago)
Allocations:  3
Labels:       gpu.model=H100,pool=gpu

Resources:
  RESOURCE  USED   TOTAL   FREE
  cpu       16.5   64      47.5
  memory    96GiB  512GiB  416GiB
  gpu       4      8       4

GPUs:
  INDEX  MODEL  MEMORY  UUID
  0      H100   80GiB   GPU-aaaa
  1      H100   80GiB   GPU-bbbb
`
	if got := b.String(); got != want {
		t.Errorf("detail:\n%s\nwant:\n%s", got, want)
	}
}

func TestNodesVerbSortsByName(t *testing.T) {
	srv := newFakeServer(t)
	nodes := cannedNodes()
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		srv.nodes[n.Name] = &n
	}
	res := runCLI(t, srv.srv.URL, "", "nodes")
	var want bytes.Buffer
	renderNodes(&want, cannedNodes(), t0, false)
	if res != (cliResult{stdout: want.String()}) {
		t.Errorf("got %+v\nwant stdout:\n%s", res, want.String())
	}
	res = runCLI(t, srv.srv.URL, "", "nodes", "-o", "json")
	var got []api.Node
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, res.stdout)
	}
	if diff := cmp.Diff(cannedNodes(), got); diff != "" {
		t.Errorf("nodes -o json (-want +got):\n%s", diff)
	}
}

func TestNodeDrainUndrainAndDetail(t *testing.T) {
	srv := newFakeServer(t)
	for _, n := range cannedNodes() {
		srv.nodes[n.Name] = &n
	}
	steps := []struct {
		args []string
		want cliResult
	}{
		{[]string{"node", "drain", "gpu1", "--reason", "bad fan"}, cliResult{stdout: "gpu1: draining (3 allocations still running)\n"}},
		{[]string{"node", "undrain", "gpu1"}, cliResult{stdout: "gpu1: ready\n"}},
		{[]string{"node", "drain", "n2"}, cliResult{stdout: "n2: drained\n"}},
		{[]string{"node", "drain", "nope"}, cliResult{stderr: "dure: node \"nope\" not found\n", code: 1}},
		{[]string{"node", "nope"}, cliResult{stderr: "dure: node \"nope\" not found\n", code: 1}},
		{[]string{"node"}, cliResult{stderr: "dure: accepts 1 arg(s), received 0\nRun 'dure node --help' for usage.\n", code: 1}},
	}
	for _, s := range steps {
		if got := runCLI(t, srv.srv.URL, "", s.args...); got != s.want {
			t.Errorf("dure %q: got %+v, want %+v", s.args, got, s.want)
		}
	}
	if n := srv.nodes["gpu1"]; n.Drain || n.DrainReason != "" {
		t.Errorf("gpu1 after undrain: drain %v reason %q", n.Drain, n.DrainReason)
	}
	res := runCLI(t, srv.srv.URL, "", "node", "n2", "-o", "json")
	var got api.Node
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || !got.Drain || got.State != "drained" {
		t.Errorf("node n2 -o json: %v %+v", err, got)
	}
}

func TestQueuesVerb(t *testing.T) {
	srv := newFakeServer(t)
	srv.queues = []api.Queue{
		{QueueSpec: api.QueueSpec{Name: "gpu", Description: "GPU jobs", Parent: "research", Weight: 2}, Pending: 4, Running: 2, Share: 0.25,
			Used: api.Resources{MilliCPU: 16000, MemoryBytes: 64 << 30, GPUs: 4},
			QuotaUsage: []api.QuotaUsage{{Resource: "gpu", Nominal: 2, Effective: 2, Used: 4, Borrowed: 2},
				{Resource: "memory", Nominal: 128 << 30, Effective: 128 << 30, Used: 64 << 30, Lendable: 64 << 30, Lent: 16 << 30}}},
		{QueueSpec: api.QueueSpec{Name: "default"}, Pending: 0, Running: 0},
		{QueueSpec: api.QueueSpec{Name: "research"}, QuotaUsage: []api.QuotaUsage{{Resource: "gpu", Effective: 2, Used: 4, Borrowed: 2, Lendable: 0}}},
		{QueueSpec: api.QueueSpec{Name: "nlp", Parent: "research"}, Running: 1, Used: api.Resources{MilliCPU: 500, GPUs: 1}, QuotaUsage: []api.QuotaUsage{{Resource: "gpu", Nominal: 1, Effective: 1, Lendable: 1}}},
	}
	want := `NAME      PARENT    WEIGHT  SHARE  PENDING  RUNNING  USED                    QUOTA (used/quota)                                                         DESCRIPTION
default   -         1       0.00   0        0        -                       -                                                                          -
gpu       research  2       0.25   4        2        cpu=16 mem=64GiB gpu=4  gpu 4/2 (+2 borrowed), memory 64GiB/128GiB (16GiB lent of 64GiB lendable)  GPU jobs
nlp       research  1       0.00   0        1        cpu=500m gpu=1          gpu 0/1 (1 lendable)                                                       -
research  -         1       0.00   0        0        -                       gpu 4/2 (+2 borrowed)                                                      -
`
	if res := runCLI(t, srv.srv.URL, "", "queues"); res != (cliResult{stdout: want}) {
		t.Errorf("got %+v\nwant stdout:\n%s", res, want)
	}
	res := runCLI(t, srv.srv.URL, "", "queues", "-o", "json")
	var got []api.Queue
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || len(got) != 4 || got[0].Name != "default" || got[1].Name != "gpu" || got[1].QuotaUsage[1].Lent != 16<<30 {
		t.Errorf("queues -o json: %v %+v", err, got)
	}
}

func TestStatusVerb(t *testing.T) {
	tests := []struct {
		name   string
		status api.Status
		leader string
	}{
		{"this server leads", api.Status{Server: "s1", Leader: "127.0.0.1:7171", IsLeader: true, Index: 42, Version: "0.1.0"}, "127.0.0.1:7171 (this server)"},
		{"another leads", api.Status{Server: "s2", Leader: "127.0.0.1:7171", Index: 42, Version: "0.1.0"}, "127.0.0.1:7171"},
		{"no leader", api.Status{Server: "s2", Index: 42, Version: "0.1.0"}, "none (no quorum: writes will fail until one is elected)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			srv.status = tt.status
			res := runCLI(t, srv.srv.URL, "", "status")
			want := "Address:  " + srv.srv.URL + "\nServer:   " + tt.status.Server + "\nLeader:   " + tt.leader + "\nIndex:    42\nVersion:  0.1.0\n"
			if res != (cliResult{stdout: want}) {
				t.Errorf("got %+v\nwant stdout:\n%s", res, want)
			}
			res = runCLI(t, srv.srv.URL, "", "status", "-o", "json")
			var got api.Status
			if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || got != tt.status {
				t.Errorf("status -o json: %v %+v", err, got)
			}
		})
	}
}

func TestNodeReasonShowsOnlyWhyANodeTakesNoWork(t *testing.T) {
	tests := []struct {
		name string
		node api.Node
		want string
	}{
		{"ready node's status note is noise", api.Node{Status: "ready", StatusReason: "registered"}, ""},
		{"down node says why", api.Node{Status: "down", StatusReason: "missed heartbeats"}, "missed heartbeats"},
		{"drain reason wins", api.Node{Status: "down", StatusReason: "missed heartbeats", Drain: true, DrainReason: "RMA"}, "RMA"},
	}
	for _, tt := range tests {
		if got := nodeReason(&tt.node); got != tt.want {
			t.Errorf("%s: nodeReason = %q, want %q", tt.name, got, tt.want)
		}
	}
}
