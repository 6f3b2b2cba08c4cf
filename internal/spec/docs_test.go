package spec

import (
	"os"
	"regexp"
	"testing"
)

// TestDocsExamples keeps docs/jobspec.md honest: every YAML example in it
// must parse and validate, and so must every bash example as an sbatch script.
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/jobspec.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```(yaml|bash)\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 5 {
		t.Fatalf("found %d examples in docs/jobspec.md; want at least 5", len(blocks))
	}
	for i, b := range blocks {
		lang, text := string(b[1]), b[2]
		parse := ParseJobFile
		if lang == "bash" {
			parse = ParseSbatch
		}
		s, err := parse(text)
		if err != nil {
			t.Errorf("example %d (%s): %v\n%s", i, lang, err, text)
			continue
		}
		Normalize(&s)
		if err := Validate(&s); err != nil {
			t.Errorf("example %d (%s): Validate: %v\n%s", i, lang, err, text)
		}
	}
}
