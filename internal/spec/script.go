package spec

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ScriptArg0 is what a shell sees as $0 when it runs a job's script.
const ScriptArg0 = "dure-script"

// interpreter says how to hand a program the text of a script as an
// argument: its flag for "run this code", and whether it takes a name for $0
// after the code (shells do; python and perl would see it as an argument).
type interpreter struct {
	flag      string
	takesArg0 bool
}

// interpreters are the #! programs whose "run this text" flag is known.
// Keys are base names without version suffixes ("python3.12" → "python").
var interpreters = map[string]interpreter{
	"sh": {"-c", true}, "bash": {"-c", true}, "dash": {"-c", true}, "zsh": {"-c", true},
	"ksh": {"-c", true}, "mksh": {"-c", true}, "ash": {"-c", true}, "yash": {"-c", true},
	"csh": {"-c", false}, "tcsh": {"-c", false},
	"python": {"-c", false}, "pypy": {"-c", false},
	"perl": {"-e", false}, "ruby": {"-e", false},
	"Rscript": {"-e", false}, "julia": {"-e", false},
}

// interpreterNames is the sorted list for error messages.
const interpreterNames = "sh, bash, dash, zsh, ksh, mksh, ash, yash, csh, tcsh, python, pypy, perl, ruby, Rscript, julia"

// scriptCommand returns the command that runs a script's text. The agent
// runs an argv, not a file, so the text travels inside the command: the
// interpreter named on the script's #! line (default /bin/sh) gets it through
// its "run this code" flag, e.g. ["/bin/bash", "-c", text, "dure-script"].
// The whole text is passed, #! and directive lines included; to each of these
// interpreters they are comments. Arguments a caller appends to the command
// reach the script as its own: $1… in shells, sys.argv[1:] in python, @ARGV
// in perl (dure sbatch SCRIPT ARGS relies on this).
func scriptCommand(text string) ([]string, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("the script is empty")
	}
	if strings.Contains(text, "\r\n") {
		return nil, errors.New(`the script has DOS line breaks (\r\n); convert it with dos2unix`)
	}
	if len(text) > MaxArgBytes {
		return nil, fmt.Errorf("the script is %d bytes; at most %d bytes are allowed (store a longer program in a file and run that)", len(text), MaxArgBytes)
	}
	prefix, kind := []string{"/bin/sh"}, "sh"
	if strings.HasPrefix(text, "#!") {
		line, _, _ := strings.Cut(text[2:], "\n")
		var err error
		if prefix, kind, err = shebang(line); err != nil {
			return nil, err
		}
	}
	in, ok := interpreters[kind]
	if !ok {
		return nil, fmt.Errorf("cannot pass a script to %q from its #! line: dure knows how to run scripts with %s; use command: to run a program file instead", kind, interpreterNames)
	}
	cmd := append(prefix, in.flag, text)
	if in.takesArg0 {
		cmd = append(cmd, ScriptArg0)
	}
	return cmd, nil
}

// shebang reads a #! line (without the "#!") the way Linux does: an
// interpreter path and at most one argument, the rest of the line. For
// "/usr/bin/env PROG ARGS" (with or without env's -S) the program is PROG.
func shebang(line string) (prefix []string, kind string, err error) {
	line = strings.TrimSpace(line)
	interp, arg, _ := strings.Cut(line, " ")
	if i := strings.IndexByte(interp, '\t'); i >= 0 {
		interp, arg = interp[:i], interp[i+1:]+" "+arg
	}
	arg = strings.TrimSpace(arg)
	switch {
	case interp == "":
		return nil, "", errors.New("the #! line names no interpreter")
	case !path.IsAbs(interp):
		return nil, "", fmt.Errorf("the #! line must name the interpreter by its absolute path; got %q", interp)
	}
	if path.Base(interp) != "env" {
		prefix = []string{interp}
		if arg != "" {
			prefix = append(prefix, arg)
		}
		return prefix, baseKind(interp), nil
	}
	words := strings.Fields(arg)
	if len(words) > 0 && words[0] == "-S" {
		words = words[1:]
	}
	if len(words) == 0 {
		return nil, "", fmt.Errorf("the #! line runs %s without naming a program", interp)
	}
	if strings.HasPrefix(words[0], "-") {
		return nil, "", fmt.Errorf("the #! line passes option %q to env; only -S is understood", words[0])
	}
	return append([]string{interp}, words...), baseKind(words[0]), nil
}

// baseKind is a program's base name without a version suffix.
func baseKind(prog string) string {
	return strings.TrimRight(path.Base(prog), "0123456789.")
}
