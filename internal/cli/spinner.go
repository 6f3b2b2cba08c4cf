package cli

import (
	"fmt"
	"io"
	"sync"
	"time"
)

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// spinnerLine redraws one line on a terminal every 100 ms: a spinner and
// what text returns, cut to the terminal's width. text runs under mu and
// returns ok false for nothing to draw yet. Off a terminal (on false) it
// draws nothing. The progress lines of dure run and dure wait are built on
// it; mu guards their state too.
type spinnerLine struct {
	w    io.Writer
	on   bool
	cols int // terminal width: the line is cut to fit
	text func() (string, bool)
	mu   sync.Mutex
	line string
	quit chan struct{}
	done chan struct{}
}

func (p *spinnerLine) init(w io.Writer, on bool, text func() (string, bool)) {
	p.w, p.on, p.cols, p.text = w, on, termWidth(w), text
	p.quit, p.done = make(chan struct{}), make(chan struct{})
	if !on {
		close(p.done)
		return
	}
	go p.loop()
}

func (p *spinnerLine) loop() {
	defer close(p.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		p.mu.Lock()
		if s, ok := p.text(); ok {
			line := truncate(spinner[i%len(spinner)]+" "+s, p.cols-1)
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

// eraseLocked clears the line (mu held).
func (p *spinnerLine) eraseLocked() {
	if p.line != "" {
		fmt.Fprint(p.w, "\r\033[K")
		p.line = ""
	}
}

// stop erases the line for good; safe to call more than once.
func (p *spinnerLine) stop() {
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
