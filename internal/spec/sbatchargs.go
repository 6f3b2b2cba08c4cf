package spec

import (
	"fmt"
	"sort"
	"strings"

	"github.com/durehq/dure/internal/api"
)

// cliAliases are dure submit's spellings of sbatch options, also understood
// on dure sbatch's command line (not in scripts): --name, --queue, --tasks,
// --cpus and --workdir.
var cliAliases = map[string]string{
	"name": "job-name", "queue": "partition", "tasks": "ntasks", "cpus": "cpus-per-task", "workdir": "chdir",
}

// SbatchCommandLine is dure sbatch's command line split the way sbatch splits
// its own: options up to the first word that is not one, then the script and
// its arguments, which are the script's even when they look like options.
type SbatchCommandLine struct {
	Options    []string // sbatch options as written, values included ("-t", "1:00", "--mem=4G")
	Own        []string // the caller's own flags as written, for it to parse
	Wrap       string   // --wrap's command
	HasWrap    bool
	Script     string // the script's path, "-" for stdin; "" with --wrap or none
	ScriptArgs []string
}

// SplitSbatchArgs splits argv, the words after "sbatch". Every option that
// #SBATCH lines accept is accepted in getopt's forms (--time=1:00,
// --time 1:00, -t 1:00, -t1:00), with dure submit's spellings of some
// (cliAliases), and --wrap=CMD. own are the caller's flags by spelling
// ("--parsable", "-h"), each saying whether it needs a value; they are
// returned in Own. A "--" ends the options. Unknown options and options
// needing a value they lack are errors here; values are checked by Parse.
func SplitSbatchArgs(argv []string, own map[string]bool) (SbatchCommandLine, error) {
	var cl SbatchCommandLine
	i := 0
	// value returns the word after an option that needs one.
	value := func(name string) (string, error) {
		if i+1 >= len(argv) {
			return "", &ParseError{Field: name, Message: "needs a value"}
		}
		i++
		return argv[i], nil
	}
	for ; i < len(argv); i++ {
		w := argv[i]
		if w == "--" {
			i++
			break
		}
		if w == "-" || !strings.HasPrefix(w, "-") {
			break
		}
		name, val, hasVal := w, "", false
		if strings.HasPrefix(w, "--") {
			name, val, hasVal = strings.Cut(w, "=")
		} else if len(w) > 2 {
			name, hasVal = w[:2], true
		}
		if takesValue, ok := own[name]; ok {
			cl.Own = append(cl.Own, w)
			if takesValue && !hasVal {
				v, err := value(name)
				if err != nil {
					return cl, err
				}
				cl.Own = append(cl.Own, v)
			}
			continue
		}
		if name == "--wrap" {
			if !hasVal {
				v, err := value(name)
				if err != nil {
					return cl, err
				}
				val = v
			}
			if strings.TrimSpace(val) == "" {
				return cl, &ParseError{Field: name, Message: "needs a command, e.g. --wrap='echo hello'"}
			}
			cl.Wrap, cl.HasWrap = val, true
			continue
		}
		d, name, _, hasVal, err := resolve(w, onCommandLine)
		if err != nil {
			return cl, err
		}
		if d == nil {
			return cl, &ParseError{Field: name, Message: unknownOption(name, own)}
		}
		cl.Options = append(cl.Options, w)
		if d.arg == requiredArg && !hasVal {
			v, err := value(name)
			if err != nil {
				return cl, err
			}
			cl.Options = append(cl.Options, v)
		}
	}
	if rest := argv[i:]; len(rest) > 0 {
		if cl.HasWrap {
			return cl, &ParseError{Field: "--wrap", Message: fmt.Sprintf("cannot be used with a script (got %q): the command is the whole script", rest[0])}
		}
		if rest[0] == "" {
			return cl, &ParseError{Field: "SCRIPT", Message: "is an empty path: give the script's file name, - to read it from stdin, or --wrap=CMD"}
		}
		cl.Script, cl.ScriptArgs = rest[0], rest[1:]
	}
	return cl, nil
}

// WrapScript is the script --wrap=CMD runs, as sbatch writes it.
func WrapScript(cmd string) []byte { return []byte("#!/bin/sh\n" + cmd + "\n") }

// Parse reads the script (ignored with --wrap, whose script has no
// directives) and applies the command line's options over its directives, as
// sbatch does: an option given here replaces the script's, and of two rivals
// (--mem and --mem-per-cpu, --gpus and --gpus-per-task) the one given here
// wins. Errors in the script are introduced by scriptName and carry its line;
// errors in the options name the option as written. Call Normalize and
// Validate on the result.
func (cl *SbatchCommandLine) Parse(script []byte, scriptName string) (api.JobSpec, error) {
	j := &sbatchJob{}
	if cl.HasWrap {
		script, scriptName = WrapScript(cl.Wrap), "--wrap"
	}
	cmd, err := j.readScript(string(script), !cl.HasWrap)
	if err != nil {
		return api.JobSpec{}, fmt.Errorf("%s: %w", scriptName, err)
	}
	if err := j.apply(cl.Options, onCommandLine); err != nil {
		return api.JobSpec{}, err
	}
	if at, err := j.finish(); err != nil {
		if at != onCommandLine {
			err = fmt.Errorf("%s: %w", scriptName, err)
		}
		return api.JobSpec{}, err
	}
	return j.build(cmd), nil
}

// unknownOption answers an unknown command-line option, with the nearest
// known one when there is one close enough. own are the caller's flags.
func unknownOption(name string, own map[string]bool) string {
	known := map[string]bool{"--wrap": true}
	for _, d := range directives {
		known["--"+d.long] = true
	}
	for alias := range cliAliases {
		known["--"+alias] = true
	}
	for long := range unsupported {
		known["--"+long] = true
	}
	for spelling := range own {
		known[spelling] = true
	}
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names) // map order must not pick among equally near ones
	if near := nearest(name, names); near != "" {
		return fmt.Sprintf("unknown option; did you mean %s?", near)
	}
	return "unknown option; sbatch options are " + supportedList()
}

// nearest returns the only candidate that name is a prefix of, else the one
// within a small edit distance, else "".
func nearest(name string, candidates []string) string {
	if !strings.HasPrefix(name, "--") {
		return "" // one letter says too little to guess from
	}
	var prefixOf []string
	for _, c := range candidates {
		if strings.HasPrefix(c, name) {
			prefixOf = append(prefixOf, c)
		}
	}
	if len(prefixOf) == 1 {
		return prefixOf[0]
	}
	best, bestDist := "", 0
	limit := min(2, max(1, (len(name)-2)/2))
	for _, c := range candidates {
		if d := editDistance(name, c); d <= limit && (best == "" || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Sets reports whether the options set the directive named long
// ("dependency"), in any spelling.
func (cl *SbatchCommandLine) Sets(long string) bool {
	for i := 0; i < len(cl.Options); i++ {
		d, _, _, hasVal, err := resolve(cl.Options[i], onCommandLine)
		if err != nil || d == nil {
			continue
		}
		if d.long == long {
			return true
		}
		if d.arg == requiredArg && !hasVal {
			i++ // its value
		}
	}
	return false
}

// SbatchOptionList lists the options of #SBATCH lines, for help texts.
func SbatchOptionList() string { return supportedList() }
