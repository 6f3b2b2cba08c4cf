package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// waitProgress draws "⠹ waiting 14s for 3 jobs: 1 running, 2 pending" on a
// terminal while `dure wait` blocks. It erases itself before each outcome
// line and at the end, so the terminal keeps only those lines; off a
// terminal it draws nothing and scripts see only the outcomes.
type waitProgress struct {
	w     io.Writer
	on    bool
	cols  int
	start time.Time
	now   func() time.Time
	mu    sync.Mutex
	line  string
	state map[string]string // unfinished job (as the user named it) → its last seen state
	quit  chan struct{}
	done  chan struct{}
}

func newWaitProgress(w io.Writer, on bool, refs []string, now func() time.Time) *waitProgress {
	p := &waitProgress{w: w, on: on, cols: termWidth(w), start: now(), now: now,
		state: make(map[string]string, len(refs)), quit: make(chan struct{}), done: make(chan struct{})}
	for _, r := range refs {
		p.state[r] = ""
	}
	if !on {
		close(p.done)
		return p
	}
	go p.loop()
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

func (p *waitProgress) eraseLocked() {
	if p.line != "" {
		fmt.Fprint(p.w, "\r\033[K")
		p.line = ""
	}
}

func (p *waitProgress) loop() {
	defer close(p.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		p.mu.Lock()
		if len(p.state) > 0 {
			line := truncate(spinner[i%len(spinner)]+" "+p.textLocked(), p.cols-1)
			fmt.Fprintf(p.w, "\r\033[K%s", line)
			p.line = line
		}
		p.mu.Unlock()
		select {
		case <-p.quit:
			return
		case <-t.C:
		}
	}
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

// stop erases the line; safe to call more than once.
func (p *waitProgress) stop() {
	if !p.on {
		return
	}
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eraseLocked()
}
