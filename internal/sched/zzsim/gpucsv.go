package zzsim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/durehq/dure/internal/model"
)

// The GPU traces come as CSV files with their own columns. The readers below
// are the converters the traces README asks for: each turns rows into trace
// Jobs (and, for openb, nodes) with the conversion rules written beside it.

const mib = 1 << 20

// csvTable reads a CSV file whose first row names the columns and checks that
// the wanted columns are present; rows are then read by name.
type csvTable struct {
	name string
	r    *csv.Reader
	col  map[string]int
	row  []string
	line int
}

func newCSVTable(r io.Reader, name string, want ...string) (*csvTable, error) {
	br, err := maybeGunzip(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1 // checked per row, with a better message
	head, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &LineError{File: name, Line: 1, Msg: "empty file: want a header row naming the columns " + strings.Join(want, ",")}
	}
	if err != nil {
		return nil, csvErr(name, err)
	}
	t := &csvTable{name: name, r: cr, col: map[string]int{}}
	for i, h := range head {
		t.col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	var missing []string
	for _, w := range want {
		if _, ok := t.col[w]; !ok {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		return nil, &LineError{File: name, Line: 1, Msg: fmt.Sprintf("header lacks column(s) %s (want %s)", strings.Join(missing, ", "), strings.Join(want, ","))}
	}
	t.line = 1
	return t, nil
}

// next reads the next row; false at the end. A row with too few columns is
// an error.
func (t *csvTable) next() (bool, error) {
	row, err := t.r.Read()
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, csvErr(t.name, err)
	}
	t.line, _ = t.r.FieldPos(0)
	if len(row) < len(t.col) {
		return false, &LineError{File: t.name, Line: t.line, Msg: fmt.Sprintf("row has %d columns, the header has %d", len(row), len(t.col))}
	}
	t.row = row
	return true, nil
}

func (t *csvTable) get(col string) string { return strings.TrimSpace(t.row[t.col[col]]) }

func (t *csvTable) errf(col, format string, args ...any) error {
	return &LineError{File: t.name, Line: t.line, Field: col, Msg: fmt.Sprintf(format, args...)}
}

// int reads a whole number in [0, limit]; "" gives ok=false.
func (t *csvTable) int(col string, limit int64) (v int64, ok bool, err error) {
	s := t.get(col)
	if s == "" {
		return 0, false, nil
	}
	v, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil {
		// Some exports write whole numbers as "8.0".
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || math.IsInf(f, 0) {
			return 0, false, t.errf(col, "%q is not a whole number", s)
		}
		if math.Abs(f) > float64(limit) {
			return 0, false, t.errf(col, "%s is out of range [0, %d]", s, limit)
		}
		v = int64(f)
	}
	if v < 0 || v > limit {
		return 0, false, t.errf(col, "%d is out of range [0, %d]", v, limit)
	}
	return v, true, nil
}

// seconds reads a non-negative number of seconds (decimals allowed).
func (t *csvTable) seconds(col string) (d time.Duration, ok bool, err error) {
	s := t.get(col)
	if s == "" {
		return 0, false, nil
	}
	f, perr := strconv.ParseFloat(s, 64)
	if perr != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false, t.errf(col, "%q is not a number of seconds", s)
	}
	if f < 0 || f > maxSeconds {
		return 0, false, t.errf(col, "%s s is out of range [0, %d]", s, int64(maxSeconds))
	}
	return time.Duration(math.Round(f * float64(time.Second))), true, nil
}

func csvErr(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LineError{File: name, Line: pe.Line, Msg: pe.Err.Error()}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// phillyTime is the layout of philly.csv's timestamp column (local time of
// the cluster, no zone; read as UTC, only differences matter).
const phillyTime = "2006-01-02 15:04:05"

// ReadPhilly converts the Philly job summary (columns timestamp, duration,
// num_gpus, gpu_time, cluster) into a trace:
//
//   - submit = timestamp, relative to the earliest one;
//   - runtime = duration (the sum of all attempts), rounded to milliseconds;
//   - a job of n GPUs is split into equal tasks, each the largest divisor of
//     n not above gpusPerNode (12 GPUs on 8-GPU nodes: 2 tasks of 6), so a
//     multi-node job is a gang of whole-node-or-smaller pieces;
//   - queue and owner = the virtual cluster id (the file has no users);
//   - no walltime: the file has none, so the scheduler's default applies.
//
// Rows with an empty duration or GPU count are dropped and counted; a
// malformed value is an error naming the line and column. The file names no
// machine: Trace.Nodes is nil.
func ReadPhilly(r io.Reader, name string, gpusPerNode int) (*Trace, error) {
	if gpusPerNode <= 0 {
		return nil, fmt.Errorf("%s: GPUs per node must be positive (got %d)", name, gpusPerNode)
	}
	tab, err := newCSVTable(r, name, "timestamp", "duration", "num_gpus", "cluster")
	if err != nil {
		return nil, err
	}
	t := &Trace{Name: name, Format: "philly"}
	type row struct {
		at time.Time
		j  Job
	}
	var rows []row
	for {
		ok, err := tab.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		at, perr := time.Parse(phillyTime, tab.get("timestamp"))
		if perr != nil {
			return nil, tab.errf("timestamp", "%q is not a time like 2017-10-09 07:01:55", tab.get("timestamp"))
		}
		dur, hasDur, err := tab.seconds("duration")
		if err != nil {
			return nil, err
		}
		gpus, hasGPUs, err := tab.int("num_gpus", maxCount)
		if err != nil {
			return nil, err
		}
		switch {
		case !hasDur:
			t.drop("no runtime")
			continue
		case !hasGPUs || gpus == 0:
			t.drop("no GPUs")
			continue
		}
		vc := tab.get("cluster")
		if vc == "" {
			vc = model.DefaultQueue
		}
		per := largestDivisorAtMost(gpus, int64(gpusPerNode))
		rows = append(rows, row{at: at, j: Job{
			Number:  int64(len(rows) + 1),
			Line:    tab.line,
			Runtime: dur,
			Request: Request{
				Owner:   vc,
				Queue:   vc,
				Tasks:   int(gpus / per),
				PerTask: model.Resources{GPUs: per},
			},
		}})
	}
	if len(rows) > 0 {
		first := rows[0].at
		for _, r := range rows {
			if r.at.Before(first) {
				first = r.at
			}
		}
		t.Start = first
		t.Jobs = make([]Job, len(rows))
		for i, r := range rows {
			r.j.Submit = r.at.Sub(first)
			t.Jobs[i] = r.j
		}
	} else {
		t.Start = time.Unix(0, 0).UTC()
	}
	t.finish()
	return t, nil
}

// largestDivisorAtMost returns the largest divisor of n that is ≤ limit.
func largestDivisorAtMost(n, limit int64) int64 {
	if n <= limit {
		return n
	}
	for d := limit; d > 1; d-- {
		if n%d == 0 {
			return d
		}
	}
	return 1
}

// ReadOpenBPods converts Alibaba's openb pod list (columns name, cpu_milli,
// memory_mib, num_gpu, gpu_milli, gpu_spec, qos, pod_phase, creation_time,
// deletion_time, scheduled_time) into a trace of one-task jobs:
//
//   - submit = creation_time; runtime = deletion_time − scheduled_time. For
//     pods still Running when the trace was taken, deletion_time is the end
//     of observation, so their runtime is a lower bound;
//   - pods never scheduled in the trace (empty scheduled_time) are dropped:
//     they have no runtime;
//   - resources: cpu_milli millicores, memory_mib MiB, num_gpu GPUs. dure
//     does not share GPUs, so a fractional request (gpu_milli < 1000) gets
//     one whole GPU (counted in Notes);
//   - gpu_spec naming one model becomes the constraint gpu.model=<model>;
//     a list of alternatives ("A|B") cannot be said with one label and is
//     left unconstrained (counted in Notes);
//   - queue = the QoS class lowercased (ls, be, burstable, guaranteed);
//     owner "openb" (the file has no users); no walltime.
//
// Trace.Nodes is nil: the machines come from ReadOpenBNodes.
func ReadOpenBPods(r io.Reader, name string) (*Trace, error) {
	tab, err := newCSVTable(r, name, "name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos", "creation_time", "deletion_time", "scheduled_time")
	if err != nil {
		return nil, err
	}
	t := &Trace{Name: name, Format: "openb", Start: time.Unix(0, 0).UTC()}
	fractional, anyOf := 0, 0
	for {
		ok, err := tab.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		cpu, _, err := tab.int("cpu_milli", maxCount*1000)
		if err != nil {
			return nil, err
		}
		mem, _, err := tab.int("memory_mib", 1<<30)
		if err != nil {
			return nil, err
		}
		gpus, _, err := tab.int("num_gpu", maxCount)
		if err != nil {
			return nil, err
		}
		gpuMilli, hasMilli, err := tab.int("gpu_milli", 1000*maxCount)
		if err != nil {
			return nil, err
		}
		created, hasCreated, err := tab.seconds("creation_time")
		if err != nil {
			return nil, err
		}
		deleted, hasDeleted, err := tab.seconds("deletion_time")
		if err != nil {
			return nil, err
		}
		sched, hasSched, err := tab.seconds("scheduled_time")
		if err != nil {
			return nil, err
		}
		switch {
		case !hasCreated:
			t.drop("no creation time")
			continue
		case !hasSched:
			t.drop("never scheduled in the trace")
			continue
		case !hasDeleted:
			t.drop("no runtime")
			continue
		case deleted < sched:
			return nil, tab.errf("deletion_time", "%s is before scheduled_time %s", tab.get("deletion_time"), tab.get("scheduled_time"))
		case cpu == 0 && mem == 0 && gpus == 0:
			t.drop("requests nothing")
			continue
		}
		if gpus == 1 && hasMilli && gpuMilli < 1000 {
			fractional++
		}
		var cons map[string]string
		if spec := tab.get("gpu_spec"); spec != "" {
			if strings.Contains(spec, "|") {
				anyOf++
			} else {
				cons = map[string]string{"gpu.model": spec}
			}
		}
		q := strings.ToLower(tab.get("qos"))
		if q == "" {
			q = model.DefaultQueue
		}
		t.Jobs = append(t.Jobs, Job{
			Number:  int64(len(t.Jobs) + 1),
			Line:    tab.line,
			Submit:  created,
			Runtime: deleted - sched,
			Request: Request{
				Owner:       "openb",
				Queue:       q,
				Tasks:       1,
				PerTask:     model.Resources{MilliCPU: cpu, MemoryBytes: mem * mib, GPUs: gpus},
				Constraints: cons,
			},
		})
	}
	if fractional > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%d fractional GPU requests (gpu_milli < 1000) rounded up to 1 whole GPU: dure does not share GPUs", fractional))
	}
	if anyOf > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%d gpu_spec lists of alternative models left unconstrained", anyOf))
	}
	t.finish()
	return t, nil
}

// ReadOpenBNodes reads an openb node list (columns sn, cpu_milli,
// memory_mib, gpu, model) into virtual nodes named by sn, with GPU devices
// 0..gpu-1 of that model and the label gpu.model=<model> on GPU nodes.
func ReadOpenBNodes(r io.Reader, name string) ([]*model.Node, error) {
	tab, err := newCSVTable(r, name, "sn", "cpu_milli", "memory_mib", "gpu", "model")
	if err != nil {
		return nil, err
	}
	var nodes []*model.Node
	seen := map[string]int{}
	for {
		ok, err := tab.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		sn := tab.get("sn")
		if sn == "" {
			return nil, tab.errf("sn", "empty node name")
		}
		if first, dup := seen[sn]; dup {
			return nil, tab.errf("sn", "node %q already listed on line %d", sn, first)
		}
		seen[sn] = tab.line
		cpu, _, err := tab.int("cpu_milli", maxCount*1000)
		if err != nil {
			return nil, err
		}
		mem, _, err := tab.int("memory_mib", 1<<30)
		if err != nil {
			return nil, err
		}
		gpus, _, err := tab.int("gpu", 1024)
		if err != nil {
			return nil, err
		}
		gm := tab.get("model")
		var devs []model.GPU
		var labels map[string]string
		if gpus > 0 {
			devs = make([]model.GPU, gpus)
			for i := range devs {
				devs[i] = model.GPU{Index: i, Model: gm}
			}
			if gm != "" {
				labels = map[string]string{"gpu.model": gm}
			}
		}
		nodes = append(nodes, simNode(sn, model.Resources{MilliCPU: cpu, MemoryBytes: mem * mib, GPUs: gpus}, devs, labels))
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%s: no nodes listed", name)
	}
	sort.SliceStable(nodes, func(a, b int) bool { return nodes[a].Name < nodes[b].Name })
	return nodes, nil
}
