package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// waitProgress draws "⠹ waiting 14s for 3 jobs: 1 running, 2 pending" on a
// terminal while `dure wait` blocks. It erases itself before each outcome
// line and at the end, so the terminal keeps only those lines; off a
// terminal it draws nothing and scripts see only the outcomes.
type waitProgress struct {
	spinnerLine
	start time.Time
	now   func() time.Time
	state map[string]string // unfinished job (as the user named it) → its last seen state
}

func newWaitProgress(w io.Writer, on bool, refs []string, now func() time.Time) *waitProgress {
	p := &waitProgress{start: now(), now: now, state: make(map[string]string, len(refs))}
	for _, r := range refs {
		p.state[r] = ""
	}
	p.init(w, on, func() (string, bool) { return p.textLocked(), len(p.state) > 0 })
	return p
}

// seen records the state a job was last seen in.
func (p *waitProgress) seen(ref, state string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.state[ref]; ok {
		p.state[ref] = state
	}
}

// finish forgets ref and runs print (which writes its outcome line) with
// the progress line erased; the next tick draws it again below.
func (p *waitProgress) finish(ref string, print func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.state, ref)
	p.eraseLocked()
	print()
}

// textLocked is the line after the spinner: how long, for how many jobs,
// and how many of them are in each state.
func (p *waitProgress) textLocked() string {
	s := "waiting " + humanDuration(p.now().Sub(p.start).Truncate(time.Second))
	if len(p.state) == 1 {
		for ref, st := range p.state {
			s += " for job " + ref
			if st != "" {
				s += ": " + st
			}
		}
		return s
	}
	s += fmt.Sprintf(" for %d jobs", len(p.state))
	count := map[string]int{}
	for _, st := range p.state {
		if st != "" {
			count[st]++
		}
	}
	states := make([]string, 0, len(count))
	for st := range count {
		states = append(states, st)
	}
	// Running before pending, as in `dure job` for an array.
	order := map[string]int{"running": 0, "pending": 1}
	sort.Slice(states, func(i, j int) bool {
		oi, iok := order[states[i]]
		oj, jok := order[states[j]]
		if iok != jok {
			return iok
		}
		if oi != oj {
			return oi < oj
		}
		return states[i] < states[j]
	})
	parts := make([]string, len(states))
	for i, st := range states {
		parts[i] = fmt.Sprintf("%d %s", count[st], st)
	}
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	return s
}
