package sim

import (
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The pictures are hand-written SVG: no dependencies, readable in any
// browser, small enough to commit. Each chart is a plot area with axes, grid
// lines, tick labels, a title, axis titles and a legend, one line per run.

// Files WriteSVGs writes, relative to its directory.
const (
	UtilizationSVG = "utilization.svg"
	WaitCDFSVG     = "wait-cdf.svg"
)

// WriteSVGs writes the utilization-over-time chart and the wait-time CDF of
// the given runs (same trace, one line per run) into dir, creating it.
func WriteSVGs(dir string, runs []*Result) ([]string, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("plot: no runs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, c := range []struct {
		name string
		draw func(io.Writer, []*Result) error
	}{{UtilizationSVG, UtilizationChart}, {WaitCDFSVG, WaitCDFChart}} {
		p := filepath.Join(dir, c.name)
		f, err := os.Create(p)
		if err != nil {
			return written, err
		}
		if err := c.draw(f, runs); err != nil {
			f.Close()
			return written, fmt.Errorf("%s: %w", p, err)
		}
		if err := f.Close(); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

// palette: distinguishable, colour-blind-safe (Okabe–Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"}

// chart geometry, in SVG user units.
const (
	chartW, chartH         = 900, 520
	marginL, marginR       = 80, 30
	marginT, marginB       = 60, 70
	plotW, plotH           = chartW - marginL - marginR, chartH - marginT - marginB
	utilizationBins        = 120
	cdfPoints              = 400
	minWaitOnLogAxis       = 1.0 // seconds: the left edge of the wait CDF
	fontFamily             = "Helvetica, Arial, sans-serif"
	axisColor, gridColor   = "#333333", "#dddddd"
	legendLineW, legendRow = 28, 22
)

type series struct {
	label string
	xs    []float64
	ys    []float64
}

type axis struct {
	title    string
	min, max float64
	log      bool
	ticks    []float64
	label    func(float64) string
}

func (a *axis) pos(v float64, length float64) float64 {
	if a.log {
		lo, hi := math.Log10(a.min), math.Log10(a.max)
		return (math.Log10(math.Max(v, a.min)) - lo) / (hi - lo) * length
	}
	return (v - a.min) / (a.max - a.min) * length
}

// UtilizationChart draws each run's utilization over time, averaged over
// utilizationBins equal intervals of the longest run.
func UtilizationChart(w io.Writer, runs []*Result) error {
	var end time.Duration
	for _, r := range runs {
		if n := len(r.Usage); n > 0 {
			end = max(end, r.Usage[n-1].At)
		}
	}
	if end <= 0 {
		end = time.Second
	}
	var ss []series
	for _, r := range runs {
		ss = append(ss, series{label: runLabel(r), xs: binCenters(end), ys: binnedUtilization(r, end)})
	}
	days := end.Hours() / 24
	xTitle, scale := "days since the first submission", 24.0
	if days < 3 {
		xTitle, scale = "hours since the first submission", 1
	}
	for i := range ss {
		for k := range ss[i].xs {
			ss[i].xs[k] /= scale
		}
	}
	xmax := end.Hours() / scale
	x := axis{title: xTitle, min: 0, max: xmax, ticks: niceTicks(0, xmax, 8), label: shortNum}
	y := axis{title: fmt.Sprintf("utilization (%s, %% of capacity)", runs[0].Primary), min: 0, max: 100,
		ticks: []float64{0, 20, 40, 60, 80, 100}, label: func(v float64) string { return fmt.Sprintf("%.0f%%", v) }}
	title := fmt.Sprintf("Utilization over time — %s (mean over %s bins)", runs[0].Trace, fmtDur(end/utilizationBins))
	return drawChart(w, title, x, y, ss)
}

func binCenters(end time.Duration) []float64 {
	xs := make([]float64, utilizationBins)
	for i := range xs {
		xs[i] = (float64(i) + 0.5) * end.Hours() / utilizationBins
	}
	return xs
}

// binnedUtilization integrates the usage step function over each bin.
func binnedUtilization(r *Result, end time.Duration) []float64 {
	ys := make([]float64, utilizationBins)
	capacity := amount(r.Capacity, r.Primary)
	if capacity <= 0 {
		return ys
	}
	width := end.Seconds() / utilizationBins
	for i, u := range r.Usage {
		from := u.At.Seconds()
		to := end.Seconds()
		if i+1 < len(r.Usage) {
			to = r.Usage[i+1].At.Seconds()
		}
		if to <= from {
			continue
		}
		b0 := min(int(from/width), utilizationBins-1)
		b1 := min(int(to/width), utilizationBins-1)
		for b := b0; b <= b1; b++ {
			lo, hi := float64(b)*width, float64(b+1)*width
			if b == utilizationBins-1 {
				hi = math.Inf(1) // the last bin takes any rounding at the end
			}
			if overlap := math.Min(to, hi) - math.Max(from, lo); overlap > 0 {
				ys[b] += u.Busy * overlap
			}
		}
	}
	for i := range ys {
		ys[i] = 100 * ys[i] / (capacity * width)
	}
	return ys
}

// WaitCDFChart draws, per run, the fraction of measured jobs that waited at
// most x, with x on a log scale from 1 s (jobs that did not wait sit at the
// left edge).
func WaitCDFChart(w io.Writer, runs []*Result) error {
	maxWait := 10.0
	var ss []series
	for _, r := range runs {
		m := Measured(r.Jobs)
		waits := make([]float64, len(m))
		for i := range m {
			waits[i] = m[i].Wait().Seconds()
		}
		slices.Sort(waits)
		if n := len(waits); n > 0 {
			maxWait = math.Max(maxWait, waits[n-1])
		}
		ss = append(ss, series{label: runLabel(r), xs: nil, ys: nil})
		ss[len(ss)-1].xs, ss[len(ss)-1].ys = cdf(waits)
	}
	hi := math.Pow(10, math.Ceil(math.Log10(maxWait)))
	var ticks []float64
	for _, t := range []float64{1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400} {
		if t <= hi {
			ticks = append(ticks, t)
		}
	}
	x := axis{title: "wait (log scale)", min: minWaitOnLogAxis, max: hi, log: true, ticks: ticks, label: waitLabel}
	y := axis{title: "jobs that waited at most this long", min: 0, max: 100,
		ticks: []float64{0, 20, 40, 60, 80, 100}, label: func(v float64) string { return fmt.Sprintf("%.0f%%", v) }}
	title := fmt.Sprintf("Wait-time CDF — %s (%d%% warm-up left out)", runs[0].Trace, int(WarmupFraction*100))
	return drawChart(w, title, x, y, ss)
}

// cdf samples the empirical CDF of sorted values at cdfPoints log-spaced
// points plus its ends, as a step line.
func cdf(sorted []float64) (xs, ys []float64) {
	n := len(sorted)
	if n == 0 {
		return nil, nil
	}
	hi := math.Max(sorted[n-1], minWaitOnLogAxis*10)
	lo := math.Log10(minWaitOnLogAxis)
	for i := 0; i <= cdfPoints; i++ {
		x := math.Pow(10, lo+(math.Log10(hi)-lo)*float64(i)/cdfPoints)
		k := sortSearch(sorted, x)
		xs = append(xs, x)
		ys = append(ys, 100*float64(k)/float64(n))
	}
	return xs, ys
}

// sortSearch counts values ≤ x.
func sortSearch(sorted []float64, x float64) int {
	lo, hi := 0, len(sorted)
	for lo < hi {
		m := (lo + hi) / 2
		if sorted[m] <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func runLabel(r *Result) string {
	return fmt.Sprintf("%s: mean wait %s, mean bsld %.1f, util %.1f%%",
		r.Policy, fmtDur(r.Metrics.MeanWait), r.Metrics.MeanBSLD, 100*r.Metrics.Utilization)
}

func drawChart(w io.Writer, title string, x, y axis, ss []series) error {
	var b strings.Builder
	// The legend sits below the plot, one row per line, so it never hides data.
	height := chartH + len(ss)*legendRow + 10
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s">`+"\n",
		chartW, height, chartW, height, fontFamily)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="30" font-size="18" font-weight="bold">%s</text>`+"\n", marginL, html.EscapeString(title))
	fmt.Fprintf(&b, `<g transform="translate(%d,%d)">`+"\n", marginL, marginT)
	// grid and ticks
	for _, t := range x.ticks {
		px := x.pos(t, plotW)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="0" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", px, px, plotH, gridColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="13" text-anchor="middle">%s</text>`+"\n", px, plotH+20, html.EscapeString(x.label(t)))
	}
	for _, t := range y.ticks {
		py := plotH - y.pos(t, plotH)
		fmt.Fprintf(&b, `<line x1="0" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", py, plotW, py, gridColor)
		fmt.Fprintf(&b, `<text x="-8" y="%.1f" font-size="13" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", py, html.EscapeString(y.label(t)))
	}
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="none" stroke="%s"/>`+"\n", plotW, plotH, axisColor)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="14" text-anchor="middle">%s</text>`+"\n", plotW/2, plotH+50, html.EscapeString(x.title))
	fmt.Fprintf(&b, `<text transform="translate(-58,%d) rotate(-90)" font-size="14" text-anchor="middle">%s</text>`+"\n", plotH/2, html.EscapeString(y.title))
	// lines
	for i, s := range ss {
		if len(s.xs) == 0 {
			continue
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" points="`, palette[i%len(palette)])
		for k := range s.xs {
			px := x.pos(math.Min(math.Max(s.xs[k], x.min), x.max), plotW)
			py := plotH - y.pos(math.Min(math.Max(s.ys[k], y.min), y.max), plotH)
			fmt.Fprintf(&b, "%.1f,%.1f ", px, py)
		}
		b.WriteString("\"/>\n")
	}
	// legend
	for i, s := range ss {
		yy := float64(plotH+marginB) + float64(i*legendRow)
		fmt.Fprintf(&b, `<line x1="0" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n",
			yy, legendLineW, yy, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="13" dominant-baseline="middle">%s</text>`+"\n",
			legendLineW+8, yy, html.EscapeString(s.label))
	}
	b.WriteString("</g>\n</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ts []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		ts = append(ts, v)
	}
	return ts
}

func shortNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func waitLabel(s float64) string {
	switch {
	case s < 60:
		return fmt.Sprintf("%.0fs", s)
	case s < 3600:
		return fmt.Sprintf("%.0fm", s/60)
	case s < 86400:
		return fmt.Sprintf("%.0fh", s/3600)
	case s < 365*86400:
		return fmt.Sprintf("%.0fd", s/86400)
	}
	return fmt.Sprintf("%.0fy", s/(365*86400))
}

// fmtDur renders a duration for people: "1h54m", "37s", "3.2d".
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%.1fd", d.Hours()/24)
}

// FormatDuration is fmtDur for callers outside the package (the CLI).
func FormatDuration(d time.Duration) string { return fmtDur(d) }
