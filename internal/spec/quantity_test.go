package spec

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseCPU(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"2", 2000},
		{"0.5", 500},
		{"500m", 500},
		{"1m", 1},
		{"1.25", 1250},
		{".5", 500},
		{"3.", 3000},
		{"  4  ", 4000},
		{"0.001", 1},
		{"1.5000", 1500},
		{"4096", 4096000},
		{"9223372036854775807m", math.MaxInt64},
	}
	for _, tc := range good {
		got, err := ParseCPU(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d, nil", tc.in, got, err, tc.want)
		}
	}
	bad := []struct {
		in, want string
	}{
		{"", "empty CPU amount: want cores (2, 0.5) or millicores (500m)"},
		{"0", `invalid CPU amount "0": must be more than zero`},
		{"0m", `invalid CPU amount "0m": must be more than zero`},
		{"-1", `invalid CPU amount "-1": must be more than zero`},
		{"abc", `invalid CPU amount "abc": want cores (2, 0.5) or millicores (500m)`},
		{"2 cores", `invalid CPU amount "2 cores": want cores (2, 0.5) or millicores (500m)`},
		{"1e3", `invalid CPU amount "1e3": want cores (2, 0.5) or millicores (500m)`},
		{"0x10", `invalid CPU amount "0x10": want cores (2, 0.5) or millicores (500m)`},
		{"1.2.3", `invalid CPU amount "1.2.3": want cores (2, 0.5) or millicores (500m)`},
		{".", `invalid CPU amount ".": want cores (2, 0.5) or millicores (500m)`},
		{"m", `invalid CPU amount "m": want cores (2, 0.5) or millicores (500m)`},
		{"0.5m", `invalid CPU amount "0.5m": finer than a millicore (0.001 or 1m)`},
		{"0.0005", `invalid CPU amount "0.0005": finer than a millicore (0.001 or 1m)`},
		{"9223372036854775808m", `invalid CPU amount "9223372036854775808m": too large`},
		{"9999999999999999", `invalid CPU amount "9999999999999999": too large`},
		{strings.Repeat("1", 65), `invalid CPU amount "11111111111111111111"…: too long`},
	}
	for _, tc := range bad {
		got, err := ParseCPU(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want error %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"1024", 1024},
		{"0", 0},
		{"512M", 512 << 20},
		{"4G", 4 << 30},
		{"4g", 4 << 30},
		{"4GiB", 4 << 30},
		{"4Gi", 4 << 30},
		{"4GB", 4 << 30}, // binary too: one meaning per letter
		{"4gb", 4 << 30},
		{"1.5GB", 3 << 29},
		{"2T", 2 << 40},
		{"1P", 1 << 50},
		{"1K", 1024},
		{"100B", 100},
		{"100b", 100},
		{"4 G", 4 << 30},
		{" 8G ", 8 << 30},
		{"0.1K", 103}, // 102.4 rounds up to a whole byte
		{".5K", 512},
		{"8191P", 8191 << 50},
	}
	for _, tc := range good {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, nil", tc.in, got, err, tc.want)
		}
	}
	bad := []struct {
		in, want string
	}{
		{"", "empty size: want bytes or a number with a unit (512M, 4G, 1.5GiB)"},
		{"-1G", `invalid size "-1G": must not be negative`},
		{"G", `invalid size "G": want bytes or a number with a unit (512M, 4G, 1.5GiB)`},
		{"4X", `invalid size "4X": unknown unit "X": want K, M, G, T or P (each 1024 times the last)`},
		{"4GG", `invalid size "4GG": unknown unit "GG": want K, M, G, T or P (each 1024 times the last)`},
		{"4Gx", `invalid size "4Gx": unknown unit "Gx": want K, M, G, T or P (each 1024 times the last)`},
		{"1e9", `invalid size "1e9": unknown unit "e9": want K, M, G, T or P (each 1024 times the last)`},
		{"1.2.3G", `invalid size "1.2.3G": want bytes or a number with a unit (512M, 4G, 1.5GiB)`},
		{"8192P", `invalid size "8192P": too large`},
		{"99999999999999999999", `invalid size "99999999999999999999": too large`},
	}
	for _, tc := range bad {
		got, err := ParseSize(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want error %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseWalltime(t *testing.T) {
	good := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"UNLIMITED", 0},
		{"infinite", 0},
		{"1h30m", 90 * time.Minute},
		{"90s", 90 * time.Second},
		{"1.5h", 90 * time.Minute},
		{"2d", 48 * time.Hour},
		{"2d12h", 60 * time.Hour},
		{"30", 30 * time.Minute},                   // MM
		{"90", 90 * time.Minute},                   // MM, leading field unbounded
		{"10:30", 10*time.Minute + 30*time.Second}, // MM:SS
		{"1:30:00", 90 * time.Minute},              // HH:MM:SS
		{"48:00:00", 48 * time.Hour},               // leading hours unbounded
		{"1-12", 36 * time.Hour},                   // D-HH
		{"1-00:30", 24*time.Hour + 30*time.Minute}, // D-HH:MM
		{"2-03:04:05", 51*time.Hour + 4*time.Minute + 5*time.Second}, // D-HH:MM:SS
		{"0:0:1", time.Second},
		{"  1:00  ", time.Minute},
	}
	for _, tc := range good {
		got, err := ParseWalltime(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseWalltime(%q) = %v, %v; want %v, nil", tc.in, got, err, tc.want)
		}
	}
	const syntax = `want e.g. "2h", "90m", "1:30:00" or "1-00:00:00"`
	bad := []struct {
		in, want string
	}{
		{"-1h", `invalid time "-1h": must not be negative`},
		{"1:75:00", `invalid time "1:75:00": minutes must be 0-59`},
		{"1:00:60", `invalid time "1:00:60": seconds must be 0-59`},
		{"1-24", `invalid time "1-24": hours must be 0-23`},
		{"1-00:60", `invalid time "1-00:60": minutes must be 0-59`},
		{"1:2:3:4", `invalid time "1:2:3:4": ` + syntax},
		{"1-", `invalid time "1-": ` + syntax},
		{"-", `invalid time "-": must not be negative`},
		{"a-01", `invalid time "a-01": ` + syntax},
		{"1::00", `invalid time "1::00": ` + syntax},
		{"soon", `invalid time "soon": ` + syntax},
		{"1.5", `invalid time "1.5": ` + syntax},
		{"2h-", `invalid time "2h-": ` + syntax},
		{"3000000h", `invalid time "3000000h": ` + syntax}, // Go reports overflow as a syntax error
		{"999999999999", `invalid time "999999999999": too long`},
		{"200000d", `invalid time "200000d": too long`},
		{"106751d1000h", `invalid time "106751d1000h": too long`},
	}
	for _, tc := range bad {
		got, err := ParseWalltime(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseWalltime(%q) = %v, %v; want error %q", tc.in, got, err, tc.want)
		}
	}
}
