package spec

import (
	"os/exec"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestScriptCommand(t *testing.T) {
	cases := []struct {
		name, script string
		want         []string
	}{
		{"no #! line: /bin/sh", "echo hi\n", []string{"/bin/sh", "-c", "echo hi\n", ScriptArg0}},
		{"bash", "#!/bin/bash\necho", []string{"/bin/bash", "-c", "#!/bin/bash\necho", ScriptArg0}},
		{"bash with its one argument", "#!/bin/bash -le\necho", []string{"/bin/bash", "-le", "-c", "#!/bin/bash -le\necho", ScriptArg0}},
		{"space after #! and a tab", "#! /bin/bash\t-e\necho", []string{"/bin/bash", "-e", "-c", "#! /bin/bash\t-e\necho", ScriptArg0}},
		{"env", "#!/usr/bin/env bash\necho", []string{"/usr/bin/env", "bash", "-c", "#!/usr/bin/env bash\necho", ScriptArg0}},
		{"env -S with arguments", "#!/usr/bin/env -S bash -e\necho", []string{"/usr/bin/env", "bash", "-e", "-c", "#!/usr/bin/env -S bash -e\necho", ScriptArg0}},
		{"versioned python", "#!/usr/bin/python3.12\nprint(1)", []string{"/usr/bin/python3.12", "-c", "#!/usr/bin/python3.12\nprint(1)"}},
		{"perl", "#!/usr/bin/perl -w\nprint 1", []string{"/usr/bin/perl", "-w", "-e", "#!/usr/bin/perl -w\nprint 1"}},
		{"csh takes no $0", "#!/bin/tcsh\necho", []string{"/bin/tcsh", "-c", "#!/bin/tcsh\necho"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := scriptCommand(tc.script)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("scriptCommand (-want +got):\n%s", diff)
			}
		})
	}
}

// TestScriptCommandRuns runs the commands for real, with the interpreters
// this machine has, to check that each one really runs the text it is given
// as its program and sees no extra arguments.
func TestScriptCommandRuns(t *testing.T) {
	cases := []struct {
		interp, script string
		args           []string // appended, as dure sbatch SCRIPT ARGS does
		want           string
		exit           int
	}{
		{"sh", "echo \"$0 $#\"\n", nil, "dure-script 0\n", 0},
		{"sh", "echo \"$# $1 $2\"\n", []string{"a b", "c"}, "2 a b c\n", 0},
		{"python3", "#!/usr/bin/env python3\nimport sys\nprint(sys.argv[1:])\n", []string{"x", "y"}, "['x', 'y']\n", 0},
		{"perl", "#!/usr/bin/perl\nprint join(',', @ARGV), \"\\n\";\n", []string{"x", "y"}, "x,y\n", 0},
		// the #! line's argument (-e) is kept: the script stops at false
		{"bash", "#!/bin/bash -e\necho \"$0 $# ${BASH_VERSION:+bash}\"\nfalse\necho unreachable\n", nil, "dure-script 0 bash\n", 1},
		{"bash", "#!/usr/bin/env bash\n#SBATCH -n 2\necho \"$(( 6 * 7 ))\"\n", nil, "42\n", 0},
		{"python3", "#!/usr/bin/env python3\nimport sys\nprint(len(sys.argv))\n", nil, "1\n", 0},
		{"perl", "#!/usr/bin/perl\nprint scalar(@ARGV), \"\\n\";\nexit 3;\n", nil, "0\n", 3},
	}
	for _, tc := range cases {
		t.Run(tc.interp, func(t *testing.T) {
			if _, err := exec.LookPath(tc.interp); err != nil {
				t.Skipf("%s is not installed", tc.interp)
			}
			argv, err := scriptCommand(tc.script)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := exec.LookPath(argv[0]); err != nil {
				t.Skipf("%s is not at %s here", tc.interp, argv[0])
			}
			argv = append(argv, tc.args...)
			cmd := exec.Command(argv[0], argv[1:]...)
			out, err := cmd.Output()
			if err != nil && cmd.ProcessState == nil {
				t.Fatal(err)
			}
			if got := string(out); got != tc.want {
				t.Errorf("output of %s = %q; want %q", argv[0], got, tc.want)
			}
			if got := cmd.ProcessState.ExitCode(); got != tc.exit {
				t.Errorf("exit code of %s = %d; want %d", argv[0], got, tc.exit)
			}
		})
	}
}
