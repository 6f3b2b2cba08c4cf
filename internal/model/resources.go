package model

import (
	"fmt"
	"sort"
	"strings"
)

// Resources is an amount of every schedulable dimension. CPU is counted in
// millicores (1000 = one core), memory and scratch disk in bytes.
type Resources struct {
	MilliCPU     int64            `json:"millicpu"`
	MemoryBytes  int64            `json:"memory_bytes"`
	GPUs         int64            `json:"gpus"`
	ScratchBytes int64            `json:"scratch_bytes"`
	Custom       map[string]int64 `json:"custom,omitempty"`
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	out := Resources{
		MilliCPU:     r.MilliCPU + o.MilliCPU,
		MemoryBytes:  r.MemoryBytes + o.MemoryBytes,
		GPUs:         r.GPUs + o.GPUs,
		ScratchBytes: r.ScratchBytes + o.ScratchBytes,
	}
	if len(r.Custom) > 0 || len(o.Custom) > 0 {
		out.Custom = make(map[string]int64, len(r.Custom)+len(o.Custom))
		for k, v := range r.Custom {
			out.Custom[k] += v
		}
		for k, v := range o.Custom {
			out.Custom[k] += v
		}
	}
	return out
}

// Sub returns r - o (may go negative; callers check with Fits first).
func (r Resources) Sub(o Resources) Resources {
	neg := Resources{MilliCPU: -o.MilliCPU, MemoryBytes: -o.MemoryBytes, GPUs: -o.GPUs, ScratchBytes: -o.ScratchBytes}
	if len(o.Custom) > 0 {
		neg.Custom = make(map[string]int64, len(o.Custom))
		for k, v := range o.Custom {
			neg.Custom[k] = -v
		}
	}
	return r.Add(neg)
}

// Scale returns r multiplied by n (n tasks of the same size).
func (r Resources) Scale(n int64) Resources {
	out := Resources{MilliCPU: r.MilliCPU * n, MemoryBytes: r.MemoryBytes * n, GPUs: r.GPUs * n, ScratchBytes: r.ScratchBytes * n}
	if len(r.Custom) > 0 {
		out.Custom = make(map[string]int64, len(r.Custom))
		for k, v := range r.Custom {
			out.Custom[k] = v * n
		}
	}
	return out
}

// Shortfall reports the first dimension in which need exceeds r, or "" if need
// fits entirely within r. The dimension names are the ones users see
// ("cpu", "memory", "gpu", "scratch", or a custom resource's name).
func (r Resources) Shortfall(need Resources) string {
	switch {
	case need.MilliCPU > r.MilliCPU:
		return "cpu"
	case need.MemoryBytes > r.MemoryBytes:
		return "memory"
	case need.GPUs > r.GPUs:
		return "gpu"
	case need.ScratchBytes > r.ScratchBytes:
		return "scratch"
	}
	if len(need.Custom) > 0 {
		keys := make([]string, 0, len(need.Custom))
		for k := range need.Custom {
			keys = append(keys, k)
		}
		sort.Strings(keys) // deterministic answer
		for _, k := range keys {
			if need.Custom[k] > r.Custom[k] {
				return k
			}
		}
	}
	return ""
}

// Fits reports whether need fits within r in every dimension.
func (r Resources) Fits(need Resources) bool { return r.Shortfall(need) == "" }

// IsZero reports whether every dimension is zero.
func (r Resources) IsZero() bool {
	if r.MilliCPU != 0 || r.MemoryBytes != 0 || r.GPUs != 0 || r.ScratchBytes != 0 {
		return false
	}
	for _, v := range r.Custom {
		if v != 0 {
			return false
		}
	}
	return true
}

// Copy returns a deep copy.
func (r Resources) Copy() Resources {
	out := r
	if r.Custom != nil {
		out.Custom = make(map[string]int64, len(r.Custom))
		for k, v := range r.Custom {
			out.Custom[k] = v
		}
	}
	return out
}

// String renders resources for humans: "cpu=2 mem=4.0GiB gpu=1".
func (r Resources) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cpu=%s mem=%s", FormatMilliCPU(r.MilliCPU), FormatBytes(r.MemoryBytes))
	if r.GPUs > 0 {
		fmt.Fprintf(&b, " gpu=%d", r.GPUs)
	}
	if r.ScratchBytes > 0 {
		fmt.Fprintf(&b, " scratch=%s", FormatBytes(r.ScratchBytes))
	}
	keys := make([]string, 0, len(r.Custom))
	for k := range r.Custom {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, r.Custom[k])
	}
	return b.String()
}

// FormatMilliCPU renders millicores as cores: 2000 → "2", 1500 → "1.5", 250 → "250m".
func FormatMilliCPU(m int64) string {
	if m%1000 == 0 {
		return fmt.Sprintf("%d", m/1000)
	}
	if m >= 1000 {
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", float64(m)/1000), "0"), ".")
	}
	return fmt.Sprintf("%dm", m)
}

// FormatBytes renders a byte count with binary units: "512MiB", "1.5GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n)
	i := -1
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d%s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}
