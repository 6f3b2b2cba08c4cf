package testkit

import (
	"fmt"
	"strconv"
	"strings"
)

// Bytes parses a size the way people write it in job files and on command
// lines: "512M", "16G", "1.5GiB", "2Ti", "1024" (bytes). Units are binary
// (16G = 16 GiB), as in Slurm's --mem. It panics on anything else; use it only
// for fixtures.
func Bytes(s string) int64 {
	n, err := parseBytes(s)
	if err != nil {
		panic(fmt.Sprintf("testkit.Bytes(%q): %v", s, err))
	}
	return n
}

func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size: want e.g. \"512M\" or \"16G\"")
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: want a non-negative number followed by an optional unit (K, M, G, T, P)", s)
	}
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I")
	mult := map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q (want K, M, G, T or P)", s, t[i:])
	}
	return int64(v * mult), nil
}
