package cli

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlyClientPackages: the CLI is a client; of dure's own packages
// it may use only the API client, the job-spec parser and model's
// formatting helpers, never server-side code.
func TestImportsOnlyClientPackages(t *testing.T) {
	allowed := map[string]bool{
		"github.com/durehq/dure/internal/api":   true,
		"github.com/durehq/dure/internal/spec":  true,
		"github.com/durehq/dure/internal/model": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/durehq/dure/") && !allowed[path] {
				t.Errorf("%s imports %s; the CLI may use only internal/api, internal/spec and internal/model", name, path)
			}
		}
	}
}
