package sim

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/sched"
)

// wellFormed parses an SVG document as XML and counts its elements by name.
func wellFormed(t *testing.T, svg []byte) map[string]int {
	t.Helper()
	count := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(svg))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return count
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			count[se.Name.Local]++
		}
	}
}

func TestWriteSVGsDrawsOneLinePerPolicy(t *testing.T) {
	var runs []*Result
	for _, p := range []sched.Policy{sched.PolicyFIFO, sched.PolicyEASY} {
		res, err := Run(readTiny(t), Options{Config: sched.Config{Policy: p}})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, res)
	}
	dir := t.TempDir()
	files, err := WriteSVGs(dir, runs)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || filepath.Base(files[0]) != UtilizationSVG || filepath.Base(files[1]) != WaitCDFSVG {
		t.Fatalf("wrote %v, want %s and %s", files, UtilizationSVG, WaitCDFSVG)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		els := wellFormed(t, data)
		if els["polyline"] != 2 {
			t.Errorf("%s: %d lines, want one per policy (2)", filepath.Base(f), els["polyline"])
		}
		for _, label := range []string{"fifo: mean wait 10s", "easy: mean wait ", "tiny.swf"} {
			if !strings.Contains(string(data), label) {
				t.Errorf("%s: no %q in the legend or title", filepath.Base(f), label)
			}
		}
	}
}

func TestBinnedUtilizationIntegratesTheStepFunction(t *testing.T) {
	// 4 cpus busy 2 for the first half, 4 for the second: bins in the
	// first half read 50%, in the second 100%.
	r := &Result{Primary: "cpu", Capacity: cpus(4), Usage: []UsagePoint{{0, 2}, {50e9, 4}, {100e9, 0}}}
	ys := binnedUtilization(r, 100e9)
	if len(ys) != utilizationBins {
		t.Fatalf("%d bins", len(ys))
	}
	if math.Abs(ys[0]-50) > 1e-9 || math.Abs(ys[len(ys)-1]-100) > 1e-9 {
		t.Errorf("first bin %v%%, last %v%%, want 50 and 100", ys[0], ys[len(ys)-1])
	}
}

func cpus(n int64) model.Resources { return model.Resources{MilliCPU: n * 1000} }
