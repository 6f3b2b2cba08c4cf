package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/model"
)

// Output formats of read verbs.
const (
	outTable = "table"
	outWide  = "wide"
	outJSON  = "json"
)

// outputFlag adds -o/--output to a read verb. wide says whether the verb has
// a wide table.
func outputFlag(c *cobra.Command, wide bool) *string {
	v := new(string)
	help := "output format: table or json"
	if wide {
		help = "output format: table, wide or json"
	}
	c.Flags().StringVarP(v, "output", "o", outTable, help)
	return v
}

func checkOutput(v string, wide bool) error {
	allowed := []string{outTable, outJSON}
	if wide {
		allowed = []string{outTable, outWide, outJSON}
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("--output: must be one of %s (got %q)", strings.Join(allowed, ", "), v)
}

// writeJSON prints v as indented JSON, the machine-readable form of every read.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns a writer that aligns tab-separated columns two spaces
// apart. Callers Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes one table line.
func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// humanDuration renders a duration the way people say it, to two units at
// most: "450ms", "12s", "3m12s", "2h5m", "3d4h".
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d == 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d < time.Hour:
		return twoUnits(int64(d/time.Minute), "m", int64(d%time.Minute/time.Second), "s")
	case d < 24*time.Hour:
		return twoUnits(int64(d/time.Hour), "h", int64(d%time.Hour/time.Minute), "m")
	default:
		return twoUnits(int64(d/(24*time.Hour)), "d", int64(d%(24*time.Hour)/time.Hour), "h")
	}
}

func twoUnits(a int64, au string, b int64, bu string) string {
	if b == 0 {
		return strconv.FormatInt(a, 10) + au
	}
	return strconv.FormatInt(a, 10) + au + strconv.FormatInt(b, 10) + bu
}

// ago renders t relative to now for tables: "12s ago", "just now", "-" for
// an unset time.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < time.Second && d > -time.Second {
		return "just now"
	}
	if d < 0 { // the server's clock is ahead of ours
		return "in " + humanDuration(d)
	}
	return humanDuration(d) + " ago"
}

// absTime renders t for detail views: "2025-03-01 14:05:09", in loc.
func absTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format("2006-01-02 15:04:05")
}

// fmtLatency renders a latency for benchmarks with sub-millisecond detail.
func fmtLatency(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	}
	if ms < 1000 {
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
}

// fmtResources renders a resource amount like "cpu=2 mem=4GiB gpu=1",
// leaving out memory when there is none ("cpu=1 gpu=8", not "mem=0B": jobs
// that ask for no memory are common and the zero is noise in a table).
func fmtResources(r api.Resources) string {
	s := toModel(r).String()
	if r.MemoryBytes == 0 {
		s = strings.Replace(s, " mem=0B", "", 1)
	}
	return s
}

func toModel(r api.Resources) model.Resources {
	return model.Resources{MilliCPU: r.MilliCPU, MemoryBytes: r.MemoryBytes, GPUs: r.GPUs, ScratchBytes: r.ScratchBytes, Custom: r.Custom}
}

// fmtRequest renders a requested amount of bytes; "-" when none was asked
// for (no limit), which "0B" would misstate.
func fmtRequest(b int64) string {
	if b == 0 {
		return "-"
	}
	return model.FormatBytes(b)
}

// usedOf renders "used/total" for one dimension.
func usedOf(used, total string) string { return used + "/" + total }

// fmtLabels renders labels sorted by key: "pool=gpu,rack=r3"; "-" if none.
func fmtLabels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// fmtCommand renders an argv for people, quoting words that need it.
func fmtCommand(argv []string) string {
	parts := make([]string, len(argv))
	for i, s := range argv {
		if s == "" || strings.ContainsAny(s, " \t\n\"'\\$`|&;<>()*?[]{}#~") {
			s = strconv.Quote(s)
		}
		parts[i] = s
	}
	return strings.Join(parts, " ")
}

// fmtInts renders "0,1,3"; "-" if empty.
func fmtInts(v []int) string {
	if len(v) == 0 {
		return "-"
	}
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// orDash returns s, or "-" for an empty cell so columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// truncate shortens s to n runes with an ellipsis, for table cells that
// carry free text.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
