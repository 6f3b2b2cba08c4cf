package sim

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
)

const phillySample = `timestamp,duration,num_gpus,gpu_time,cluster
2017-10-09 07:01:55,66.0,1,66.0,11cb48
2017-10-09 06:13:03,2951.5,12,35418.0,6214e9
2017-10-09 06:13:36,,1,,6214e9
2017-10-09 08:00:00,10,16,160,6214e9
`

func TestReadPhillyConvertsRows(t *testing.T) {
	tr, err := ReadPhilly(strings.NewReader(phillySample), "philly.csv", 8)
	if err != nil {
		t.Fatal(err)
	}
	gpus := func(n int64) model.Resources { return model.Resources{GPUs: n} }
	want := []Job{
		// the earliest submission is the origin; 12 GPUs on 8-GPU nodes: 2 tasks of 6
		{ID: 1, Number: 2, Line: 3, Submit: 0, Runtime: 2951500 * time.Millisecond, Request: Request{
			Owner: "6214e9", Queue: "6214e9", Tasks: 2, PerTask: gpus(6)}},
		{ID: 2, Number: 1, Line: 2, Submit: 48*time.Minute + 52*time.Second, Runtime: 66 * time.Second, Request: Request{
			Owner: "11cb48", Queue: "11cb48", Tasks: 1, PerTask: gpus(1)}},
		{ID: 3, Number: 3, Line: 5, Submit: time.Hour + 46*time.Minute + 57*time.Second, Runtime: 10 * time.Second, Request: Request{
			Owner: "6214e9", Queue: "6214e9", Tasks: 2, PerTask: gpus(8)}},
	}
	if diff := cmp.Diff(want, tr.Jobs); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"no runtime": 1}, tr.Dropped); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
	if tr.Nodes != nil {
		t.Errorf("Philly names no machine, got %d nodes", len(tr.Nodes))
	}
}

func TestLargestDivisorSplitsGPUJobsIntoEqualTasks(t *testing.T) {
	for _, tc := range []struct{ n, limit, want int64 }{
		{1, 8, 1}, {8, 8, 8}, {12, 8, 6}, {24, 8, 8}, {16, 4, 4}, {7, 4, 1}, {128, 8, 8},
	} {
		if got := largestDivisorAtMost(tc.n, tc.limit); got != tc.want {
			t.Errorf("largestDivisorAtMost(%d, %d) = %d, want %d", tc.n, tc.limit, got, tc.want)
		}
	}
}

func TestReadPhillyRejectsMalformedRowsNamingLineAndColumn(t *testing.T) {
	const head = "timestamp,duration,num_gpus,gpu_time,cluster\n"
	for _, tc := range []struct{ name, text, want string }{
		{"missing column", "timestamp,duration,cluster\n", "p.csv:1: header lacks column(s) num_gpus"},
		{"empty file", "", "p.csv:1: empty file"},
		{"bad time", head + "yesterday,1,1,1,a\n", `p.csv:2: timestamp: "yesterday" is not a time`},
		{"negative duration", head + "2017-10-09 07:01:55,-5,1,1,a\n", "p.csv:2: duration: -5 s is out of range"},
		{"fractional GPUs", head + "2017-10-09 07:01:55,5,1.5,1,a\n", `p.csv:2: num_gpus: "1.5" is not a whole number`},
		{"short row", head + "2017-10-09 07:01:55,5\n", "p.csv:2: row has 2 columns, the header has 5"},
		{"bad quoting", head + "2017-10-09 07:01:55,5,1,1,\"a\n", "p.csv:2:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadPhilly(strings.NewReader(tc.text), "p.csv", 8)
			var le *LineError
			if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a LineError starting %q", err, tc.want)
			}
		})
	}
}

const openbPods = `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0
openb-pod-0001,6000,12288,1,460,,BE,Succeeded,100,400,160
openb-pod-0002,4000,8192,0,0,,LS,Pending,200,300,
openb-pod-0003,88000,65536,8,1000,V100M32,Burstable,Failed,300,1300,310
openb-pod-0004,1000,1024,1,1000,A10|T4,LS,Failed,400,500,401
`

func TestReadOpenBPodsConvertsRows(t *testing.T) {
	tr, err := ReadOpenBPods(strings.NewReader(openbPods), "pods.csv")
	if err != nil {
		t.Fatal(err)
	}
	want := []Job{
		{ID: 1, Number: 1, Line: 2, Submit: 0, Runtime: 12537496 * time.Second, Request: Request{
			Owner: "openb", Queue: "ls", Tasks: 1, PerTask: model.Resources{MilliCPU: 12000, MemoryBytes: 16 << 30, GPUs: 1}}},
		{ID: 2, Number: 2, Line: 3, Submit: 100 * time.Second, Runtime: 240 * time.Second, Request: Request{
			Owner: "openb", Queue: "be", Tasks: 1, PerTask: model.Resources{MilliCPU: 6000, MemoryBytes: 12 << 30, GPUs: 1}}},
		{ID: 3, Number: 3, Line: 5, Submit: 300 * time.Second, Runtime: 990 * time.Second, Request: Request{
			Owner: "openb", Queue: "burstable", Tasks: 1, PerTask: model.Resources{MilliCPU: 88000, MemoryBytes: 64 << 30, GPUs: 8},
			Constraints: map[string]string{"gpu.model": "V100M32"}}},
		{ID: 4, Number: 4, Line: 6, Submit: 400 * time.Second, Runtime: 99 * time.Second, Request: Request{
			Owner: "openb", Queue: "ls", Tasks: 1, PerTask: model.Resources{MilliCPU: 1000, MemoryBytes: 1 << 30, GPUs: 1}}},
	}
	if diff := cmp.Diff(want, tr.Jobs); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"never scheduled in the trace": 1}, tr.Dropped); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
	wantNotes := []string{
		"1 fractional GPU requests (gpu_milli < 1000) rounded up to 1 whole GPU: dure does not share GPUs",
		"1 gpu_spec lists of alternative models left unconstrained",
	}
	if diff := cmp.Diff(wantNotes, tr.Notes); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
}

func TestReadOpenBPodsRejectsMalformedRows(t *testing.T) {
	const head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
	for _, tc := range []struct{ name, text, want string }{
		{"ends before it starts", head + "p,1000,1,0,0,,LS,Failed,10,20,30\n", "pods.csv:2: deletion_time: 20 is before scheduled_time 30"},
		{"negative cpu", head + "p,-1000,1,0,0,,LS,Failed,10,20,10\n", "pods.csv:2: cpu_milli: -1000 is out of range"},
		{"word for a time", head + "p,1000,1,0,0,,LS,Failed,soon,20,10\n", `pods.csv:2: creation_time: "soon" is not a number of seconds`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadOpenBPods(strings.NewReader(tc.text), "pods.csv")
			var le *LineError
			if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a LineError starting %q", err, tc.want)
			}
		})
	}
}

const openbNodes = `sn,cpu_milli,memory_mib,gpu,model
openb-node-0001,96000,393216,8,G2
openb-node-0000,32000,262144,0,
`

func TestReadOpenBNodesBuildsTheCluster(t *testing.T) {
	nodes, err := ReadOpenBNodes(strings.NewReader(openbNodes), "nodes.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Name != "openb-node-0000" || nodes[1].Name != "openb-node-0001" {
		t.Fatalf("nodes = %v, want both, sorted by name", nodes)
	}
	g := nodes[1]
	if !cmp.Equal(g.Capacity, model.Resources{MilliCPU: 96000, MemoryBytes: 384 << 30, GPUs: 8}) || len(g.GPUs) != 8 ||
		g.GPUs[7] != (model.GPU{Index: 7, Model: "G2"}) || g.Labels["gpu.model"] != "G2" || !g.Schedulable() {
		t.Errorf("GPU node = %+v, want cpu=96 mem=384GiB, 8 G2 devices 0–7, label gpu.model=G2, ready", g)
	}
	if c := nodes[0]; c.Capacity.GPUs != 0 || c.GPUs != nil || c.Labels != nil {
		t.Errorf("CPU node = %+v, want no GPUs and no labels", c)
	}
	_, err = ReadOpenBNodes(strings.NewReader(openbNodes+"openb-node-0000,1,1,0,\n"), "nodes.csv")
	if err == nil || !strings.Contains(err.Error(), `nodes.csv:4: sn: node "openb-node-0000" already listed on line 3`) {
		t.Errorf("duplicate node: err = %v", err)
	}
}

func FuzzReadPhilly(f *testing.F) {
	f.Add([]byte(phillySample))
	f.Add([]byte("timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,1e3,8.0,1,\n"))
	f.Add([]byte("cluster,num_gpus,duration,timestamp\n\"a\",1,2,2017-01-01 00:00:00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ReadPhilly(bytes.NewReader(data), "philly.csv", 8)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "philly.csv") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		checkJobs(t, tr)
		for _, j := range tr.Jobs {
			if j.Request.PerTask.GPUs < 1 || j.Request.PerTask.GPUs > 8 {
				t.Fatalf("task of %d GPUs on 8-GPU nodes", j.Request.PerTask.GPUs)
			}
		}
	})
}

func FuzzReadOpenB(f *testing.F) {
	f.Add([]byte(openbPods), []byte(openbNodes))
	f.Add([]byte("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\np,1,1,1,1,,,,1.5,2.5,2\n"),
		[]byte("sn,cpu_milli,memory_mib,gpu,model\nn,1,1,1024,X\n"))
	f.Fuzz(func(t *testing.T, pods, nodes []byte) {
		if tr, err := ReadOpenBPods(bytes.NewReader(pods), "pods.csv"); err == nil {
			checkJobs(t, tr)
		} else if !strings.HasPrefix(err.Error(), "pods.csv") {
			t.Fatalf("error %q does not name the file", err)
		}
		ns, err := ReadOpenBNodes(bytes.NewReader(nodes), "nodes.csv")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "nodes.csv") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, n := range ns {
			if int64(len(n.GPUs)) != n.Capacity.GPUs || n.Capacity.MilliCPU < 0 || n.Capacity.MemoryBytes < 0 {
				t.Fatalf("node %+v inconsistent", n)
			}
		}
	})
}

// checkJobs asserts what every reader promises of a trace it returns.
func checkJobs(t *testing.T, tr *Trace) {
	t.Helper()
	for i, j := range tr.Jobs {
		r := j.Request
		if j.ID != model.JobID(i+1) || j.Runtime < 0 || j.Submit < 0 || r.Tasks < 1 || r.Walltime < 0 ||
			r.PerTask.MilliCPU < 0 || r.PerTask.MemoryBytes < 0 || r.PerTask.GPUs < 0 || r.Total().IsZero() {
			t.Fatalf("job %d invalid after a successful read: %+v", i, j)
		}
		if i > 0 && j.Submit < tr.Jobs[i-1].Submit {
			t.Fatalf("jobs not in submission order at %d", i)
		}
	}
}
