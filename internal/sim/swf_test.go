package sim

import (
	"bytes"
	"compress/gzip"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/durehq/dure/internal/model"
)

const swfHeader = `; Version: 2.2
; UnixStartTime: 843480031
; MaxNodes: 100
; MaxProcs: 128
; Queue:  2  production
;
`

func TestReadSWFConvertsJobLines(t *testing.T) {
	// job submit wait run alloc cpu mem req-procs req-time req-mem status user group exe queue part prec think
	const lines = swfHeader +
		"  7   100  5  60   4 -1 -1  8   600 -1 1 12 3 -1  2 -1 -1 -1\n" + // allocated procs win over requested
		"  8   200 -1  30  -1 -1 -1  6    -1 -1 1 -1 3 -1 -1 -1 -1 -1\n" + // requested procs; no request → runtime
		"  9   150 -1   0   1 -1 -1  1    10 -1 0  4 3 -1  5 -1 -1 -1\n" + // zero runtime kept; queue without a name
		"\n"
	tr, err := ReadSWF(strings.NewReader(lines), "t.swf")
	if err != nil {
		t.Fatal(err)
	}
	cpu := model.Resources{MilliCPU: 1000}
	want := []Job{
		{ID: 1, Number: 7, Line: 7, Submit: 100 * time.Second, Runtime: time.Minute, Request: Request{
			Owner: "u12", Queue: "production", Walltime: 10 * time.Minute, Tasks: 4, PerTask: cpu, Processors: true}},
		{ID: 2, Number: 9, Line: 9, Submit: 150 * time.Second, Runtime: 0, Request: Request{
			Owner: "u4", Queue: "q5", Walltime: 10 * time.Second, Tasks: 1, PerTask: cpu, Processors: true}},
		{ID: 3, Number: 8, Line: 8, Submit: 200 * time.Second, Runtime: 30 * time.Second, Request: Request{
			Owner: "" /* user -1: anonymous */, Queue: model.DefaultQueue, Walltime: 30 * time.Second, Tasks: 6, PerTask: cpu, Processors: true}},
	}
	if diff := cmp.Diff(want, tr.Jobs); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}
	if got := tr.Start; !got.Equal(time.Unix(843480031, 0)) {
		t.Errorf("start = %v, want UnixStartTime 843480031", got)
	}
	if len(tr.Nodes) != 1 || tr.Nodes[0].Capacity.MilliCPU != 128000 {
		t.Errorf("machine = %v, want one node of MaxProcs = 128 CPUs", tr.Nodes)
	}
}

func TestReadSWFDropsJobsWithoutRuntimeOrProcessors(t *testing.T) {
	const lines = "; MaxNodes: 16\n" +
		"1 0 -1 -1 4 -1 -1 4 60 -1 1 1 1 -1 -1 -1 -1 -1\n" + // no runtime
		"2 0 -1 10 -1 -1 -1 -1 60 -1 1 1 1 -1 -1 -1 -1 -1\n" + // no processors at all
		"3 0 -1 10 0 -1 -1 0 60 -1 1 1 1 -1 -1 -1 -1 -1\n" + // zero processors
		"4 -1 -1 10 2 -1 -1 2 60 -1 1 1 1 -1 -1 -1 -1 -1\n" + // no submit time
		"5 5 -1 10 2 -1 -1 2 60 -1 1 1 1 -1 -1 -1 -1 -1\n"
	tr, err := ReadSWF(strings.NewReader(lines), "t.swf")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"no runtime": 1, "no processors": 2, "no submit time": 1}, tr.Dropped); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
	if len(tr.Jobs) != 1 || tr.Jobs[0].Number != 5 {
		t.Errorf("kept %+v, want job 5 alone", tr.Jobs)
	}
	if tr.Nodes[0].Capacity.MilliCPU != 16000 {
		t.Errorf("machine from MaxNodes = %s, want cpu=16", tr.Nodes[0].Capacity)
	}
}

func TestReadSWFRejectsMalformedLinesNamingLineAndField(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"too few fields", "; c\n1 0 -1 10 4\n", "t.swf:2: a job line has 18 numbers, this one has 5"},
		{"too many fields", "1 0 -1 10 4 -1 -1 4 60 -1 1 1 1 -1 -1 -1 -1 -1 9\n", "t.swf:1: a job line has 18 numbers, this one has 19"},
		{"not a number", "1 0 -1 ten 4 -1 -1 4 60 -1 1 1 1 -1 -1 -1 -1 -1\n", `t.swf:1: field 4 (run time): "ten" is not a number`},
		{"NaN", "1 0 -1 10 NaN -1 -1 4 60 -1 1 1 1 -1 -1 -1 -1 -1\n", `t.swf:1: field 5 (allocated processors): "NaN" is not a number`},
		{"runtime out of range", "1 0 -1 99999999999 4 -1 -1 4 60 -1 1 1 1 -1 -1 -1 -1 -1\n", "t.swf:1: field 4 (run time): 99999999999 s is out of range"},
		{"processors out of range", "1 0 -1 10 999999999 -1 -1 4 60 -1 1 1 1 -1 -1 -1 -1 -1\n", "t.swf:1: field 5 (allocated processors): 999999999 processors is out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSWF(strings.NewReader(tc.text), "t.swf")
			var le *LineError
			if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a LineError starting %q", err, tc.want)
			}
		})
	}
}

func TestReadSWFReadsGzipAndDecimals(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("; MaxProcs: 4\n1 0.4 -1 10.6 2 -1 -1 2 60.0 -1 1 1 1 -1 -1 -1 -1 -1\n"))
	zw.Close()
	tr, err := ReadSWF(&buf, "t.swf.gz")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Jobs) != 1 || tr.Jobs[0].Runtime != 11*time.Second || tr.Jobs[0].Submit != 0 || tr.Jobs[0].Request.Walltime != time.Minute {
		t.Errorf("jobs = %+v, want one job: submit 0, runtime 11s (rounded), walltime 60s", tr.Jobs)
	}
}

func TestReadSWFOrdersBySubmissionAndNumbersInThatOrder(t *testing.T) {
	const lines = "; MaxProcs: 4\n" +
		"1 50 -1 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n" +
		"2 10 -1 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n" +
		"3 50 -1 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n"
	tr, err := ReadSWF(strings.NewReader(lines), "t.swf")
	if err != nil {
		t.Fatal(err)
	}
	var got [][2]int64
	for _, j := range tr.Jobs {
		got = append(got, [2]int64{int64(j.ID), j.Number})
	}
	if diff := cmp.Diff([][2]int64{{1, 2}, {2, 1}, {3, 3}}, got); diff != "" {
		t.Errorf("(ID, file number) pairs (-want +got):\n%s", diff)
	}
}

func FuzzReadSWF(f *testing.F) {
	f.Add([]byte(tinySWF))
	f.Add([]byte(swfHeader + "7 100 5 60 4 -1 -1 8 600 -1 1 12 3 -1 2 -1 -1 -1\n"))
	f.Add([]byte("1 0.5 -1 1e3 2 -1 -1 2 -1 -1 1 1 1 -1 -1 -1 -1 -1\n"))
	f.Add([]byte("; Queue: x\n;MaxProcs:\n1 2 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ReadSWF(bytes.NewReader(data), "fuzz.swf")
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) && !strings.HasPrefix(err.Error(), "fuzz.swf: ") {
				t.Fatalf("error %q neither a LineError nor prefixed with the file name", err)
			}
			return
		}
		for i, j := range tr.Jobs {
			if j.ID != model.JobID(i+1) || j.Runtime < 0 || j.Submit < 0 || j.Request.Tasks < 1 || j.Request.Walltime <= 0 {
				t.Fatalf("job %d invalid after a successful read: %+v", i, j)
			}
			if i > 0 && j.Submit < tr.Jobs[i-1].Submit {
				t.Fatalf("jobs not in submission order at %d", i)
			}
		}
	})
}
