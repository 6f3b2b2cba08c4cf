package archtest

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// envAllowed lists the packages under internal/ that may read the
// environment or define flags themselves; everywhere else configuration
// arrives through parameters set by cmd/ (DESIGN.md §3: only cmd/ reads flags
// and the environment). Each entry says why.
var envAllowed = map[string]string{
	// The task supervisor is the dure binary re-executed by the agent; it is
	// configured through its own environment (and passes an environment on
	// to the task), and resolves the supervisor binary along PATH.
	"internal/exec": "the supervisor reads its own environment",
	// The CLI defines its command-line flags (cobra) and honours DURE_ADDR.
	"internal/cli": "the CLI's flags and DURE_ADDR",
}

// envReads are the calls that read the process environment.
var envReads = map[string][]string{
	"os":      {"Getenv", "LookupEnv", "Environ", "ExpandEnv"},
	"syscall": {"Getenv", "Environ"},
}

// flagPackages define command-line flags.
var flagPackages = []string{"flag", "github.com/spf13/pflag"}

// clockReads read the wall clock or sleep on it.
var clockReads = []string{"Now", "Since", "Until"}

// schedTimeBans additionally keep timers and sleeps out of the scheduler.
var schedTimeBans = []string{"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTimer", "NewTicker"}

// randPackages produce random numbers.
var randPackages = []string{"math/rand", "math/rand/v2", "crypto/rand"}

// ioStdlib are standard-library packages that do I/O, read the environment,
// log or draw randomness: off limits to the pure packages (sched, model)
// although they are "standard library".
var ioStdlib = []string{"os", "net", "log", "syscall", "io/ioutil", "plugin", "unsafe", "math/rand", "crypto/rand", "runtime/debug"}

// file is one parsed Go file and where it lives.
type file struct {
	rel    string // slash path from the module root, e.g. internal/sched/sched.go
	dir    string // its package directory, e.g. internal/sched
	isTest bool
	fset   *token.FileSet
	ast    *ast.File
}

// check applies every rule to one file and returns the violations, each as
// "path:line: what is wrong (rule)".
func check(module string, f file) []string {
	var out []string
	report := func(pos token.Pos, format string, args ...any) {
		out = append(out, fmt.Sprintf("%s:%d: %s", f.rel, f.fset.Position(pos).Line, fmt.Sprintf(format, args...)))
	}
	in := func(pkgs ...string) bool {
		for _, p := range pkgs {
			if f.dir == p || strings.HasPrefix(f.dir, p+"/") {
				return true
			}
		}
		return false
	}
	own := func(p string) (string, bool) { // "internal/x" for module packages
		if p == module {
			return "", true
		}
		rest, ok := strings.CutPrefix(p, module+"/")
		return rest, ok
	}

	// local name -> import path, for resolving selector expressions.
	names := map[string]string{}
	for _, imp := range f.ast.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		name := defaultName(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		names[name] = p

		local, isOwn := own(p)
		switch {
		case in("internal") && isOwn && (local == "cmd" || strings.HasPrefix(local, "cmd/")):
			report(imp.Pos(), "imports %q: nothing under internal/ may import cmd/ (DESIGN.md §3: arrows point downward)", p)
		}
		if f.isTest {
			continue // the dependency rules are about what ships, not test helpers
		}
		switch {
		case in("internal/sched", "internal/model"):
			allowedOwn := in("internal/sched") && local == "internal/model"
			switch {
			case isOwn && !allowedOwn:
				report(imp.Pos(), "imports %q: %s may import only the standard library%s (DESIGN.md §3)", p, f.dir, map[bool]string{true: " and internal/model", false: ""}[in("internal/sched")])
			case !isOwn && !isStdlib(p):
				report(imp.Pos(), "imports %q: %s may import only the standard library (DESIGN.md §3)", p, f.dir)
			case hasPathPrefix(p, ioStdlib...):
				report(imp.Pos(), "imports %q: %s is pure: no I/O, environment, logging or randomness (DESIGN.md §2 rule 3)", p, f.dir)
			}
		case in("internal/fsm", "internal/state"):
			if local == "internal/server" || local == "internal/httpapi" || hasPathPrefix(p, "github.com/hashicorp/raft") || strings.HasPrefix(p, "github.com/hashicorp/raft-") {
				report(imp.Pos(), "imports %q: fsm and state never import server, httpapi or raft (DESIGN.md §3)", p)
			}
		case in("internal/cli"):
			if isOwn && local != "internal/api" && local != "internal/spec" && local != "internal/model" {
				report(imp.Pos(), "imports %q: the CLI talks only to the API client; of dure's packages it may use internal/api, internal/spec (job files) and internal/model (formatting) (DESIGN.md §3)", p)
			}
		}
		if in("internal") && !in(envAllowedDirs()...) && hasPathPrefix(p, flagPackages...) && !isOwn {
			report(imp.Pos(), "imports %q: only cmd/ defines flags; pass configuration in (DESIGN.md §3)", p)
		}
	}
	if f.isTest {
		return out // tests may read the clock, the environment and flags
	}

	pkgOf := func(e ast.Expr) string { // import path a selector's X names, or ""
		id, ok := e.(*ast.Ident)
		if !ok || id.Obj != nil { // Obj != nil: a local declaration shadows the package
			return ""
		}
		return names[id.Name]
	}
	ast.Inspect(f.ast, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			p, sel := pkgOf(n.X), n.Sel.Name
			if p == "" {
				return true
			}
			if in("internal") && !in(envAllowedDirs()...) && contains(envReads[p], sel) {
				report(n.Pos(), "%s.%s reads the environment: only cmd/ does; pass the value in (DESIGN.md §3)", defaultName(p), sel)
			}
			switch {
			case in("internal/sched") && p == "time" && contains(schedTimeBans, sel):
				report(n.Pos(), "time.%s: the scheduler never reads the clock or sleeps; use the now parameter (DESIGN.md §2 rule 3)", sel)
			case in("internal/fsm", "internal/state") && p == "time" && contains(clockReads, sel):
				report(n.Pos(), "time.%s: %s must be deterministic; times come in the command (DESIGN.md §2 rule 2)", sel, f.dir)
			case in("internal/sched") && contains(randPackages, p):
				report(n.Pos(), "%s.%s: the scheduler uses no randomness (DESIGN.md §2 rule 3)", defaultName(p), sel)
			}
		case *ast.GoStmt:
			if in("internal/sched") {
				report(n.Pos(), "go statement: the scheduler starts no goroutines (DESIGN.md §2 rule 3)")
			}
		}
		return true
	})
	return out
}

func envAllowedDirs() []string {
	dirs := make([]string, 0, len(envAllowed))
	for d := range envAllowed {
		dirs = append(dirs, d)
	}
	return dirs
}

// defaultName is the name an import gets without an explicit one, as far as
// the rules need it: the last element, skipping a major-version suffix
// ("math/rand/v2" -> "rand"). It assumes the package is named like its
// directory, true of everything the rules look for.
func defaultName(p string) string {
	base := path.Base(p)
	if strings.Contains(p, "/") && len(base) > 1 && base[0] == 'v' && strings.Trim(base[1:], "0123456789") == "" {
		return path.Base(path.Dir(p))
	}
	return base
}

// isStdlib: standard-library paths have no dot in their first element.
func isStdlib(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".")
}

// hasPathPrefix reports whether p is one of prefixes or below one of them.
func hasPathPrefix(p string, prefixes ...string) bool {
	for _, pre := range prefixes {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// moduleRoot finds the directory holding go.mod and the module path in it.
func moduleRoot(t *testing.T) (dir, module string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
					return dir, strings.Trim(strings.TrimSpace(m), `"`)
				}
			}
			t.Fatalf("%s/go.mod has no module line", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// TestRepositoryFollowsTheRules parses every Go file under internal/ and
// applies the rules.
func TestRepositoryFollowsTheRules(t *testing.T) {
	root, module := moduleRoot(t)
	var files, violations []string
	err := filepath.WalkDir(filepath.Join(root, "internal"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			violations = append(violations, fmt.Sprintf("%s: does not parse: %v", rel, err))
			return nil
		}
		files = append(files, rel)
		violations = append(violations, check(module, file{rel: rel, dir: path.Dir(rel), isTest: strings.HasSuffix(name, "_test.go"), fset: fset, ast: f})...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found only %d Go files under %s/internal: the walk is broken, so the rules checked nothing", len(files), root)
	}
	sort.Strings(violations)
	for _, v := range violations {
		t.Error(v)
	}
}
