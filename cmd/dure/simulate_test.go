package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durehq/dure/internal/cli"
)

// kthTrace is the real KTH log, where CI keeps the shared traces (beside
// the repository).
const kthTrace = "../../../shared/traces/KTH-SP2-1996-2.1-cln.swf.gz"

// dure runs the CLI in process with args and returns stdout, stderr and
// the exit code, exactly as the binary would print them.
func dure(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := func(string) (string, bool) { return "", false }
	root := cli.NewRootCommand(env, &out, &errb, strings.NewReader(""))
	addSimulationCommands(root)
	root.SetArgs(args)
	code := cli.Execute(root)
	return out.String(), errb.String(), code
}

func TestSimulateASliceOfKTH(t *testing.T) {
	if _, err := os.Stat(kthTrace); err != nil {
		t.Skipf("trace not available (%v); CI has it at %s", err, kthTrace)
	}
	plots := t.TempDir()
	stdout, stderr, code := dure(t, "simulate", "--trace", kthTrace, "--limit", "2000", "--policy", "fifo,easy", "-o", "json", "--plot", plots)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var got struct {
		Trace string                       `json:"trace"`
		Runs  []map[string]json.RawMessage `json:"runs"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, stdout)
	}
	if got.Trace != "KTH-SP2-1996-2.1-cln.swf.gz" || len(got.Runs) != 2 {
		t.Fatalf("trace %q with %d runs, want KTH with 2 (fifo, easy)", got.Trace, len(got.Runs))
	}
	for i, policy := range []string{"fifo", "easy"} {
		run := got.Runs[i]
		for _, key := range []string{"jobs", "utilization", "mean_wait_s", "median_wait_s", "p95_wait_s", "mean_bsld", "policy", "trace", "makespan_s", "preemptions"} {
			if _, ok := run[key]; !ok {
				t.Errorf("%s: key %q missing from %v", policy, key, run)
			}
		}
		var p string
		var jobs int
		var util, bsld float64
		json.Unmarshal(run["policy"], &p)
		json.Unmarshal(run["jobs"], &jobs)
		json.Unmarshal(run["utilization"], &util)
		json.Unmarshal(run["mean_bsld"], &bsld)
		if p != policy || jobs != 1980 || util <= 0 || util > 1 || bsld < 1 {
			t.Errorf("run %d: policy %q, %d jobs, utilization %v, mean bsld %v; want %s, 1980 (2000 less the first 1%%), a fraction, ≥ 1",
				i, p, jobs, util, bsld, policy)
		}
	}
	for _, f := range []string{"utilization.svg", "wait-cdf.svg"} {
		data, err := os.ReadFile(filepath.Join(plots, f))
		if err != nil || !bytes.HasPrefix(data, []byte("<svg")) || !bytes.Contains(data, []byte("easy: mean wait")) {
			t.Errorf("%s: err %v, want an SVG with an easy line", f, err)
		}
	}

	stdout, _, code = dure(t, "simulate", "--trace", kthTrace, "--limit", "500", "--policy", "easy")
	for _, want := range []string{"trace       KTH-SP2-1996-2.1-cln.swf.gz (swf, 500 jobs", "cluster     1 node (machine): cpu=100", "POLICY", "\neasy  "} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("table output (exit %d) lacks %q:\n%s", code, want, stdout)
		}
	}
}

// The queue file of dure server --queues and dure queue apply configures
// the simulated queues: SWF field 15 names them (q1, q2).
func TestSimulateReadsTheServersQueueFile(t *testing.T) {
	dir := t.TempDir()
	swf := filepath.Join(dir, "t.swf")
	os.WriteFile(swf, []byte("; MaxProcs: 4\n"+
		"1 0 -1 10 4 -1 -1 4 10 -1 1 1 1 -1 1 -1 -1 -1\n"+
		"2 0 -1 10 4 -1 -1 4 10 -1 1 2 2 -1 2 -1 -1 -1\n"), 0o644)
	queues := filepath.Join(dir, "queues.yaml")
	os.WriteFile(queues, []byte(`queues:
  - name: all
  - {name: q1, parent: all, weight: 3, quotas: [{resource: cpu, nominal: 4000}]}
  - {name: q2, parent: all, weight: 1, members: [u2]}
`), 0o644)
	stdout, stderr, code := dure(t, "simulate", "--trace", swf, "--queues", queues, "--policy", "dure", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var got struct {
		Queues []struct {
			Queue     string  `json:"queue"`
			FairShare float64 `json:"fair_share"`
		} `json:"queues"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, stdout)
	}
	want := map[string]float64{"q1": 0.75, "q2": 0.25}
	if len(got.Queues) != 2 {
		t.Fatalf("queues %+v, want q1 and q2", got.Queues)
	}
	for _, q := range got.Queues {
		if want[q.Queue] != q.FairShare {
			t.Errorf("queue %s: fair share %v, want %v (weights 3 and 1 from the file)", q.Queue, q.FairShare, want[q.Queue])
		}
	}
	if stderr != "" {
		t.Errorf("a file whose queues match the trace's: stderr %q, want nothing", stderr)
	}

	// A file none of whose queues the trace uses changes nothing but is
	// silent about it: say so, naming the trace's queues.
	other := filepath.Join(dir, "cluster-queues.yaml")
	os.WriteFile(other, []byte("queues:\n  - {name: research, quotas: [{resource: cpu, nominal: 4000}]}\n"), 0o644)
	_, stderr, code = dure(t, "simulate", "--trace", swf, "--queues", other, "--policy", "dure", "-o", "json")
	if want := "dure: --queues " + other + ": no queue of the file holds a job of the trace, whose queues are q1, q2: name the file's queues after them (see docs/simulate.md)\n"; code != 0 || stderr != want {
		t.Errorf("unmatched queue file: exit %d, stderr %q; want 0 and %q", code, stderr, want)
	}
}

func TestSimulateRejectsBadInvocations(t *testing.T) {
	swf := filepath.Join(t.TempDir(), "t.swf")
	os.WriteFile(swf, []byte("; MaxProcs: 4\n1 0 -1 10 2 -1 -1 2 10 -1 1 1 1 -1 -1 -1 -1 -1\n"), 0o644)
	badQueues := filepath.Join(t.TempDir(), "queues.yaml")
	os.WriteFile(badQueues, []byte("queues:\n  - {name: q1, quotas: [{resource: gpu, nominal: 2, lending_limit: 3}]}\n"), 0o644)
	bad := filepath.Join(t.TempDir(), "bad.swf")
	os.WriteFile(bad, []byte("1 0 -1 10 2\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"simulate"}, "dure: --trace: required"},
		{[]string{"simulate", "--trace", swf, "--policy", "sjf"}, "dure: --policy: unknown policy \"sjf\" (want fifo, easy, conservative or dure)\n"},
		{[]string{"simulate", "--trace", swf, "--limit", "-1"}, "dure: --limit: must be 0 (the whole trace) or more (got -1)\n"},
		{[]string{"simulate", "--trace", swf, "--nodes", "4x(2cpu"}, `dure: --nodes "4x(2cpu": missing ")"`},
		{[]string{"simulate", "--trace", swf, "-o", "yaml"}, "dure: --output: must be table or json"},
		{[]string{"simulate", "--trace", bad}, "dure: bad.swf:1: a job line has 18 numbers, this one has 5"},
		{[]string{"simulate", "--trace", swf, "--load-scale", "0"}, "dure: --load-scale: load scale must be positive"},
		{[]string{"simulate", "--trace", filepath.Join(t.TempDir(), "missing.swf")}, "no such file"},
		{[]string{"simulate", "--trace", swf, "--queues", badQueues}, "queues[0].quotas[0].lending_limit: must be between 0 and the nominal quota 2"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, stderr, code := dure(t, tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want failure saying %q", code, stderr, tc.want)
			}
		})
	}
}

func TestBenchSchedReportsThroughputAndPassTimes(t *testing.T) {
	stdout, stderr, code := dure(t, "bench", "sched", "--nodes", "100", "--jobs", "1000", "--queues", "5", "--racks", "4", "--passes", "2", "--policy", "easy", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got map[string]float64
	dec := json.NewDecoder(strings.NewReader(stdout))
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	got = map[string]float64{}
	for k, v := range raw {
		if f, ok := v.(float64); ok {
			got[k] = f
		}
	}
	for _, key := range []string{"placements_per_s", "pass_ms", "pass_ms_p50", "pass_ms_p99", "passes", "placements"} {
		if _, ok := got[key]; !ok {
			t.Errorf("key %q missing: %s", key, stdout)
		}
	}
	if got["passes"] != 2 || got["placements"] <= 0 || got["placements_per_s"] <= 0 {
		t.Errorf("passes %v, placements %v, placements/s %v; want 2 passes that placed work", got["passes"], got["placements"], got["placements_per_s"])
	}
	_, stderr, code = dure(t, "bench", "sched", "--nodes", "0")
	if code == 0 || !strings.Contains(stderr, "nodes, queues and racks must be at least 1") {
		t.Errorf("--nodes 0: exit %d, stderr %q", code, stderr)
	}
}
