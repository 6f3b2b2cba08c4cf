package spec

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// maxQuantityLen bounds the text of one quantity, so a huge scalar in a job
// file cannot make big-number arithmetic slow.
const maxQuantityLen = 64

// ParseCPU reads a CPU amount per task: whole or fractional cores ("2",
// "0.5") or millicores ("500m"). It returns millicores. Zero, negative
// amounts and amounts finer than a millicore are errors.
func ParseCPU(s string) (int64, error) {
	t := strings.TrimSpace(s)
	const want = "want cores (2, 0.5) or millicores (500m)"
	if t == "" {
		return 0, fmt.Errorf("empty CPU amount: %s", want)
	}
	if len(t) > maxQuantityLen {
		return 0, fmt.Errorf("invalid CPU amount %.20q…: too long", t)
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid CPU amount %q: must be more than zero", t)
	}
	num, scale := t, int64(1000)
	if strings.HasSuffix(t, "m") {
		num, scale = strings.TrimSuffix(t, "m"), 1
	}
	r, ok := parseDecimal(num)
	if !ok {
		return 0, fmt.Errorf("invalid CPU amount %q: %s", t, want)
	}
	r.Mul(r, new(big.Rat).SetInt64(scale))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid CPU amount %q: finer than a millicore (0.001 or 1m)", t)
	}
	if r.Sign() == 0 {
		return 0, fmt.Errorf("invalid CPU amount %q: must be more than zero", t)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("invalid CPU amount %q: too large", t)
	}
	return r.Num().Int64(), nil
}

// ParseSize reads an amount of memory or disk. A bare number is bytes. Units
// are powers of 1024 whichever way they are written, as in Slurm and as RAM
// is sold: K, KB, Ki and KiB all mean 1024 bytes; likewise M, G, T and P.
// Units are case-insensitive and may follow a decimal ("1.5G"); a fraction of
// a byte rounds up. Negative sizes are errors; zero is allowed.
func ParseSize(s string) (int64, error) {
	return parseSize(s, 1)
}

// parseSize is ParseSize with a different unit for bare numbers (sbatch's
// --mem counts megabytes when no unit is given).
func parseSize(s string, bareUnit int64) (int64, error) {
	t := strings.TrimSpace(s)
	const want = "want bytes or a number with a unit (512M, 4G, 1.5GiB)"
	if t == "" {
		return 0, fmt.Errorf("empty size: %s", want)
	}
	if len(t) > maxQuantityLen {
		return 0, fmt.Errorf("invalid size %.20q…: too long", t)
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid size %q: must not be negative", t)
	}
	end := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unitText := t, ""
	if end >= 0 {
		num, unitText = t[:end], strings.TrimSpace(t[end:])
	}
	r, ok := parseDecimal(num)
	if !ok {
		return 0, fmt.Errorf("invalid size %q: %s", t, want)
	}
	unit, ok := sizeUnit(unitText, bareUnit)
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q: want K, M, G, T or P (each 1024 times the last)", t, unitText)
	}
	r.Mul(r, new(big.Rat).SetInt64(unit))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // floor; the value is not negative
	if !r.IsInt() {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return 0, fmt.Errorf("invalid size %q: too large", t)
	}
	return n.Int64(), nil
}

func sizeUnit(u string, bare int64) (int64, bool) {
	u = strings.ToLower(u)
	if u == "" {
		return bare, true
	}
	if u == "b" {
		return 1, true
	}
	shift := 0
	switch u[0] {
	case 'k':
		shift = 10
	case 'm':
		shift = 20
	case 'g':
		shift = 30
	case 't':
		shift = 40
	case 'p':
		shift = 50
	default:
		return 0, false
	}
	switch u[1:] {
	case "", "b", "i", "ib":
		return 1 << shift, true
	}
	return 0, false
}

// parseDecimal reads digits with at most one decimal point ("2", "0.5",
// ".5", "3."). No sign, exponent or base prefix: quantities are written by
// people, and anything cleverer is more likely a typo than intent.
func parseDecimal(s string) (*big.Rat, bool) {
	digits, dots := 0, 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return nil, false
		}
	}
	if digits == 0 || dots > 1 {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

// ParseWalltime reads a time limit. It accepts Go durations ("1h30m", "90s",
// plus a leading day count, "2d12h") and Slurm's forms: "MM", "MM:SS",
// "HH:MM:SS", "D-HH", "D-HH:MM" and "D-HH:MM:SS". A bare number is minutes,
// as in Slurm. "", "0", "unlimited" and "infinite" mean no limit (0).
func ParseWalltime(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "", "0", "unlimited", "infinite":
		return 0, nil
	}
	if len(t) > maxQuantityLen {
		return 0, fmt.Errorf("invalid time %.20q…: too long", t)
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid time %q: must not be negative", t)
	}
	var d time.Duration
	var err error
	if strings.ContainsAny(t, ":-") || isDigits(t) {
		d, err = parseSlurmTime(t)
	} else {
		d, err = parseGoDuration(t)
	}
	if err != nil {
		return 0, fmt.Errorf("invalid time %q: %w", t, err)
	}
	return d, nil
}

var errTimeSyntax = errors.New(`want e.g. "2h", "90m", "1:30:00" or "1-00:00:00"`)

func parseGoDuration(t string) (time.Duration, error) {
	var days int64
	if i := strings.IndexByte(t, 'd'); i > 0 && isDigits(t[:i]) {
		n, err := strconv.ParseInt(t[:i], 10, 64)
		if err != nil || n > int64(math.MaxInt64/(24*time.Hour)) {
			return 0, errors.New("too long")
		}
		days, t = n, t[i+1:]
		if t == "" {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, errTimeSyntax
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	total := time.Duration(days) * 24 * time.Hour
	if d > math.MaxInt64-total {
		return 0, errors.New("too long")
	}
	return total + d, nil
}

// parseSlurmTime reads Slurm's --time forms. The leading field may be any
// size ("48:00:00", "90"); the fields after it must be in their usual range,
// which catches typos such as "1:75:00".
func parseSlurmTime(t string) (time.Duration, error) {
	var days int64
	rest := t
	hasDays := false
	if i := strings.IndexByte(t, '-'); i >= 0 {
		n, err := timeField(t[:i], "days", -1)
		if err != nil {
			return 0, err
		}
		days, rest, hasDays = n, t[i+1:], true
	}
	parts := strings.Split(rest, ":")
	if len(parts) > 3 {
		return 0, errTimeSyntax
	}
	var secs int64
	if hasDays {
		// D-HH, D-HH:MM, D-HH:MM:SS
		names := []string{"hours", "minutes", "seconds"}
		limits := []int64{24, 60, 60}
		mult := []int64{3600, 60, 1}
		for i, p := range parts {
			n, err := timeField(p, names[i], limits[i])
			if err != nil {
				return 0, err
			}
			secs += n * mult[i]
		}
	} else {
		// MM, MM:SS, HH:MM:SS
		var names []string
		var mult []int64
		switch len(parts) {
		case 1:
			names, mult = []string{"minutes"}, []int64{60}
		case 2:
			names, mult = []string{"minutes", "seconds"}, []int64{60, 1}
		case 3:
			names, mult = []string{"hours", "minutes", "seconds"}, []int64{3600, 60, 1}
		}
		for i, p := range parts {
			limit := int64(60)
			if i == 0 {
				limit = -1
			}
			n, err := timeField(p, names[i], limit)
			if err != nil {
				return 0, err
			}
			secs += n * mult[i]
		}
	}
	const maxSecs = int64(math.MaxInt64 / time.Second)
	if days > maxSecs/86400 || secs > maxSecs-days*86400 {
		return 0, errors.New("too long")
	}
	return time.Duration(days*86400+secs) * time.Second, nil
}

// timeField reads one field of a Slurm time; limit < 0 means unbounded.
func timeField(p, name string, limit int64) (int64, error) {
	if p == "" || !isDigits(p) {
		return 0, errTimeSyntax
	}
	if len(p) > 12 {
		return 0, errors.New("too long")
	}
	n, err := strconv.ParseInt(p, 10, 64)
	if err != nil {
		return 0, errTimeSyntax
	}
	if limit >= 0 && n >= limit {
		return 0, fmt.Errorf("%s must be 0-%d", name, limit-1)
	}
	return n, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
