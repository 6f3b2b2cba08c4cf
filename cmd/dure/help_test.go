package main

import (
	"strings"
	"testing"
)

// A flag whose usage says what leaving it out does does not also print its
// sentinel default: "(default: detected with nvidia-smi) (default -1)" reads
// as two contradicting defaults. Leaving --gpus out still means "detect".
func TestGPUsHelpHasOneDefault(t *testing.T) {
	for _, c := range []struct {
		name  string
		usage func() string
		value func() string
	}{
		{"agent", func() string { return agentCommand().Flags().FlagUsages() }, func() string { return agentCommand().Flags().Lookup("gpus").Value.String() }},
		{"dev", func() string { return devCommand().Flags().FlagUsages() }, func() string { return devCommand().Flags().Lookup("gpus").Value.String() }},
	} {
		var line string
		for _, l := range strings.Split(c.usage(), "\n") {
			if strings.Contains(l, "--gpus") {
				line = l
			}
		}
		if !strings.Contains(line, "(default: ") || strings.Contains(line, "(default -1)") {
			t.Errorf("dure %s --help: %q; want the usage's own default only", c.name, line)
		}
		if v := c.value(); v != "-1" {
			t.Errorf("dure %s: --gpus left out is %s; want -1 (detect)", c.name, v)
		}
	}
}
