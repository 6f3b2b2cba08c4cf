package cli

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseJobID: job IDs come from the command line; every input either
// parses to the number it spells or is rejected with the rule.
func FuzzParseJobID(f *testing.F) {
	for _, s := range []string{"12", "0", "-1", " 7 ", "18446744073709551615", "18446744073709551616", "1e3", "abc", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseJobID(s)
		if err != nil {
			if !strings.Contains(err.Error(), "want a positive number") {
				t.Errorf("parseJobID(%q) error %q does not state the rule", s, err)
			}
			return
		}
		if id == 0 || strconv.FormatUint(id, 10) != strings.TrimLeft(strings.TrimSpace(s), "+0") {
			t.Errorf("parseJobID(%q) = %d", s, id)
		}
	})
}

// FuzzMergePairs: --env and --constraint words; a word is accepted only as
// KEY=VALUE with a non-empty key, and then lands in the map unchanged.
func FuzzMergePairs(f *testing.F) {
	for _, s := range []string{"A=1", "A=", "=1", "A", "A=b=c", "", "K=\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := mergePairs(nil, []string{s}, "--env")
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			if err == nil {
				t.Errorf("mergePairs(%q) accepted it", s)
			}
			return
		}
		if err != nil || len(m) != 1 || m[k] != v {
			t.Errorf("mergePairs(%q) = %v, %v; want {%q: %q}", s, m, err, k, v)
		}
	})
}

// FuzzLineWriter: task output split into arbitrary chunks comes out whole:
// every byte once, in order, and each write ends at a line end except the
// final flush.
func FuzzLineWriter(f *testing.F) {
	f.Add([]byte("a\nbc\n\nd"), uint8(1))
	f.Add([]byte("no newline"), uint8(3))
	f.Add([]byte("\n\n\n"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		size := int(chunk%16) + 1
		var writes [][]byte
		rec := writerFunc(func(p []byte) (int, error) {
			writes = append(writes, bytes.Clone(p))
			return len(p), nil
		})
		lw := &lineWriter{w: rec}
		for i := 0; i < len(data); i += size {
			n, err := lw.Write(data[i:min(i+size, len(data))])
			if err != nil || n != min(size, len(data)-i) {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		lw.flush()
		if got := bytes.Join(writes, nil); !bytes.Equal(got, data) {
			t.Fatalf("output %q, want %q", got, data)
		}
		for i, w := range writes[:max(len(writes)-1, 0)] {
			if !bytes.HasSuffix(w, []byte("\n")) {
				t.Errorf("write %d %q splits a line", i, w)
			}
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
