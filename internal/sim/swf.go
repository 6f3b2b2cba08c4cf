package sim

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/durehq/dure/internal/model"
)

// Limits on values read from outside, so a corrupt file gets an error rather
// than an overflowing duration or a billion-task job.
const (
	maxSeconds = 1 << 33 // about 272 years
	maxCount   = 1 << 24 // processors, GPUs or tasks in one job
	maxLine    = 1 << 20 // bytes in one line
)

// swfFields names the 18 SWF fields, for messages.
var swfFields = [18]string{
	"job number", "submit time", "wait time", "run time", "allocated processors",
	"average CPU time", "used memory", "requested processors", "requested time",
	"requested memory", "status", "user id", "group id", "executable number",
	"queue number", "partition number", "preceding job", "think time",
}

// ReadSWF reads a trace in the Standard Workload Format of the Parallel
// Workloads Archive, plain or gzip-compressed (detected from the content).
// name labels errors and reports.
//
// Header comments (lines starting with ';') give the machine: MaxProcs, else
// MaxNodes, becomes one node named "machine" with that many CPUs; "Queue: N
// name" lines name queue numbers; UnixStartTime dates the trace. Each other
// non-blank line is one job of 18 whitespace-separated numbers, -1 meaning
// unknown:
//
//   - processors: field 5 (allocated), or field 8 (requested) when 5 is
//     missing; a job with neither is dropped ("no processors");
//   - runtime: field 4; a job without one is dropped ("no runtime");
//   - walltime (the estimate backfilling plans with): field 9, or the actual
//     runtime when field 9 is missing (perfect estimate; at least 1 s);
//   - owner "u<field 12>", queue from field 15 (named by the header, else
//     "q<N>"; -1 is the default queue).
//
// Every job becomes Tasks one-CPU processors (Request.Processors). A line
// that is not 18 numbers, or a number out of range, is an error naming the
// line and the field.
func ReadSWF(r io.Reader, name string) (*Trace, error) {
	br, err := maybeGunzip(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	t := &Trace{Name: name, Format: "swf", Start: time.Unix(0, 0).UTC()}
	queues := map[int64]string{}
	var maxProcs, maxNodes int64
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 64*1024), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		if text[0] == ';' {
			key, val, ok := strings.Cut(strings.TrimSpace(text[1:]), ":")
			if !ok {
				continue
			}
			val = strings.TrimSpace(val)
			switch strings.TrimSpace(key) {
			case "MaxProcs":
				maxProcs = headerInt(val)
			case "MaxNodes":
				maxNodes = headerInt(val)
			case "UnixStartTime":
				if v := headerInt(val); v > 0 {
					t.Start = time.Unix(v, 0).UTC()
				}
			case "Queue":
				if num, qname, ok := strings.Cut(val, " "); ok {
					if n, err := strconv.ParseInt(num, 10, 64); err == nil && strings.TrimSpace(qname) != "" {
						queues[n] = strings.TrimSpace(qname)
					}
				}
			}
			continue
		}
		var f [18]int64
		if err := parseSWFLine(text, &f); err != nil {
			err.File, err.Line = name, line
			return nil, err
		}
		procs := f[4]
		if procs <= 0 {
			procs = f[7]
		}
		switch {
		case f[1] < 0:
			t.drop("no submit time")
			continue
		case f[3] < 0:
			t.drop("no runtime")
			continue
		case procs <= 0:
			t.drop("no processors")
			continue
		}
		wall := f[8]
		if wall <= 0 {
			wall = max(f[3], 1)
		}
		q := model.DefaultQueue
		if f[14] >= 0 {
			if n, ok := queues[f[14]]; ok {
				q = n
			} else {
				q = "q" + strconv.FormatInt(f[14], 10)
			}
		}
		owner := "" // unknown: anonymous, not one user with a shared history
		if f[11] >= 0 {
			owner = "u" + strconv.FormatInt(f[11], 10)
		}
		t.Jobs = append(t.Jobs, Job{
			Number:  f[0],
			Line:    line,
			Submit:  time.Duration(f[1]) * time.Second,
			Runtime: time.Duration(f[3]) * time.Second,
			Request: Request{
				Owner:      owner,
				Queue:      q,
				Walltime:   time.Duration(wall) * time.Second,
				Tasks:      int(procs),
				PerTask:    model.Resources{MilliCPU: 1000},
				Processors: true,
			},
		})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{File: name, Line: line + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if maxProcs <= 0 {
		maxProcs = maxNodes
	}
	if maxProcs > 0 && maxProcs <= maxCount {
		t.Nodes = []*model.Node{simNode("machine", model.Resources{MilliCPU: maxProcs * 1000}, nil, nil)}
	}
	t.finish()
	return t, nil
}

// parseSWFLine parses the 18 numbers of a job line. Integers are the norm;
// a few archive logs write decimals, which are rounded to whole units.
func parseSWFLine(text string, f *[18]int64) *LineError {
	fields := strings.Fields(text)
	if len(fields) != 18 {
		return &LineError{Msg: fmt.Sprintf("a job line has 18 numbers, this one has %d", len(fields))}
	}
	for i, s := range fields {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fl, ferr := strconv.ParseFloat(s, 64)
			if ferr != nil || math.IsNaN(fl) || math.IsInf(fl, 0) {
				return &LineError{Field: fmt.Sprintf("field %d (%s)", i+1, swfFields[i]), Msg: fmt.Sprintf("%q is not a number", s)}
			}
			if math.Abs(fl) > maxSeconds {
				v = maxSeconds + 1 // reported as out of range below when it matters
			} else {
				v = int64(math.Round(fl))
			}
		}
		f[i] = v
	}
	// Range checks on the fields the simulator uses; the others are read
	// only to validate the line's shape.
	for _, i := range []int{1, 3, 8} {
		if f[i] > maxSeconds {
			return &LineError{Field: fmt.Sprintf("field %d (%s)", i+1, swfFields[i]), Msg: fmt.Sprintf("%d s is out of range (at most %d)", f[i], int64(maxSeconds))}
		}
	}
	for _, i := range []int{4, 7} {
		if f[i] > maxCount {
			return &LineError{Field: fmt.Sprintf("field %d (%s)", i+1, swfFields[i]), Msg: fmt.Sprintf("%d processors is out of range (at most %d)", f[i], maxCount)}
		}
	}
	return nil
}

// headerInt reads the leading integer of a header value ("100", "100 nodes").
func headerInt(val string) int64 {
	fs := strings.Fields(val)
	if len(fs) == 0 {
		return 0
	}
	v, err := strconv.ParseInt(fs[0], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// maybeGunzip returns a reader of r's content, decompressed if it starts
// with the gzip magic bytes.
func maybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	magic, err := br.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	}
	return br, nil
}

// simNode builds a ready virtual node.
func simNode(name string, capacity model.Resources, gpus []model.GPU, labels map[string]string) *model.Node {
	return &model.Node{
		Name:     name,
		Address:  "sim",
		Capacity: capacity,
		GPUs:     gpus,
		Labels:   labels,
		Status:   model.NodeReady,
	}
}
