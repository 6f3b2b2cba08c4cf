// Package archtest holds the repository's architecture rules written as
// tests (DESIGN.md §3, STYLE.md "Habits" 12): which packages may import
// which, that only cmd/ (and the few explained exceptions) read flags and
// the environment, and that the pure packages never read the clock, draw
// random numbers or start goroutines.
//
// It has no code of its own beyond this file: the rules live in
// rules_test.go, which parses every Go file under internal/ with go/parser
// (no build, so it also checks files behind build tags). When a rule fails,
// the message names the file, the line and the rule; fix the code, or change
// the rule here with a reason next to it — never both silently.
package archtest
