package archtest

import (
	"go/parser"
	"go/token"
	"path"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const mod = "github.com/durehq/dure"

// checkSource runs the rules on a fake file at rel.
func checkSource(t *testing.T, rel, src string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, rel, src, 0)
	if err != nil {
		t.Fatalf("fake file %s does not parse: %v", rel, err)
	}
	return check(mod, file{rel: rel, dir: path.Dir(rel), isTest: strings.HasSuffix(rel, "_test.go"), fset: fset, ast: f})
}

// TestCheckerFlagsViolations feeds the checker small fake files, bad and
// good, so the rules are known to bite: a rule that can never fail protects
// nothing.
func TestCheckerFlagsViolations(t *testing.T) {
	tests := []struct {
		name string
		rel  string
		src  string
		want []string // substrings, one per expected violation, in order
	}{
		{
			name: "sched imports I/O and a server package",
			rel:  "internal/sched/bad.go",
			src: `package sched
import (
	"os"
	"github.com/durehq/dure/internal/server"
	"github.com/google/go-cmp/cmp"
)`,
			want: []string{
				`internal/sched/bad.go:3: imports "os": internal/sched is pure`,
				`internal/sched/bad.go:4: imports "github.com/durehq/dure/internal/server": internal/sched may import only the standard library and internal/model`,
				`internal/sched/bad.go:5: imports "github.com/google/go-cmp/cmp": internal/sched may import only the standard library`,
			},
		},
		{
			name: "sched may import model and the pure standard library",
			rel:  "internal/sched/good.go",
			src: `package sched
import (
	"sort"
	"time"
	"github.com/durehq/dure/internal/model"
)`,
		},
		{
			name: "model may not import sched",
			rel:  "internal/model/bad.go",
			src: `package model
import "github.com/durehq/dure/internal/sched"`,
			want: []string{`internal/model/bad.go:2: imports "github.com/durehq/dure/internal/sched": internal/model may import only the standard library (`},
		},
		{
			name: "sched reads the clock, draws random numbers and starts a goroutine",
			rel:  "internal/sched/clock.go",
			src: `package sched
import (
	"math/rand/v2"
	"time"
)
func f() {
	_ = time.Now()
	_ = time.Since(time.Time{})
	_ = rand.IntN(3)
	go f()
	time.Sleep(time.Second)
}`,
			want: []string{
				`clock.go:3: imports "math/rand/v2"`,
				`clock.go:7: time.Now: the scheduler never reads the clock`,
				`clock.go:8: time.Since`,
				`clock.go:9: rand.IntN: the scheduler uses no randomness`,
				`clock.go:10: go statement`,
				`clock.go:11: time.Sleep`,
			},
		},
		{
			name: "a local variable named like a package is not the package",
			rel:  "internal/sched/shadow.go",
			src: `package sched
func f() {
	type clock struct{ Now func() int }
	time := clock{}
	_ = time.Now
}`,
		},
		{
			name: "sched tests may use the clock",
			rel:  "internal/sched/x_test.go",
			src: `package sched
import "time"
var _ = time.Now()`,
		},
		{
			name: "fsm imports raft and server; state reads the clock",
			rel:  "internal/fsm/bad.go",
			src: `package fsm
import (
	"time"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-boltdb/v2"
	"github.com/durehq/dure/internal/server"
	"github.com/durehq/dure/internal/httpapi"
)
var _ = time.Now()`,
			want: []string{
				`:4: imports "github.com/hashicorp/raft": fsm and state never import`,
				`:5: imports "github.com/hashicorp/raft-boltdb/v2"`,
				`:6: imports "github.com/durehq/dure/internal/server"`,
				`:7: imports "github.com/durehq/dure/internal/httpapi"`,
				`:9: time.Now: internal/fsm must be deterministic`,
			},
		},
		{
			name: "state reads the clock through an alias",
			rel:  "internal/state/sub/bad.go",
			src: `package sub
import clk "time"
var _ = clk.Since(clk.Time{})`,
			want: []string{`internal/state/sub/bad.go:3: time.Since: internal/state/sub must be deterministic`},
		},
		{
			name: "fsm tests may adapt to raft",
			rel:  "internal/fsm/raft_test.go",
			src: `package fsm
import "github.com/hashicorp/raft"
var _ raft.FSM`,
		},
		{
			name: "cli imports server code",
			rel:  "internal/cli/bad.go",
			src: `package cli
import (
	"github.com/durehq/dure/internal/api"
	"github.com/durehq/dure/internal/spec"
	"github.com/durehq/dure/internal/model"
	"github.com/durehq/dure/internal/server"
)`,
			want: []string{`internal/cli/bad.go:6: imports "github.com/durehq/dure/internal/server": the CLI talks only to the API client`},
		},
		{
			name: "internal code imports cmd, even from a test",
			rel:  "internal/agent/x_test.go",
			src: `package agent
import _ "github.com/durehq/dure/cmd/dure"`,
			want: []string{`internal/agent/x_test.go:2: imports "github.com/durehq/dure/cmd/dure": nothing under internal/ may import cmd/`},
		},
		{
			name: "agent reads the environment and defines flags",
			rel:  "internal/agent/bad.go",
			src: `package agent
import (
	sys "os"
	"flag"
	"syscall"
)
var (
	_ = sys.Getenv("HOME")
	_, _ = sys.LookupEnv("X")
	_ = sys.Environ()
	_, _ = syscall.Getenv("Y")
	_ = flag.Bool("v", false, "")
)`,
			want: []string{
				`bad.go:4: imports "flag": only cmd/ defines flags`,
				`bad.go:8: os.Getenv reads the environment`,
				`bad.go:9: os.LookupEnv`,
				`bad.go:10: os.Environ`,
				`bad.go:11: syscall.Getenv`,
			},
		},
		{
			name: "exec and cli are allowed the environment and flags",
			rel:  "internal/exec/env.go",
			src: `package exec
import ("os"; "flag")
var _ = os.Getenv("PATH")
var _ = flag.Bool("x", false, "")`,
		},
		{
			name: "tests may read the environment",
			rel:  "internal/agent/env_test.go",
			src: `package agent
import "os"
var _ = os.Getenv("DURE_TEST_CHROMIUM")`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkSource(t, tc.rel, tc.src)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d violations, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestDefaultName(t *testing.T) {
	got := map[string]string{}
	for _, p := range []string{"os", "math/rand/v2", "github.com/hashicorp/raft-boltdb/v2", "net/http", "v2"} {
		got[p] = defaultName(p)
	}
	want := map[string]string{"os": "os", "math/rand/v2": "rand", "github.com/hashicorp/raft-boltdb/v2": "raft-boltdb", "net/http": "http", "v2": "v2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaultName (-want +got):\n%s", diff)
	}
}
