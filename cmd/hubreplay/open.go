package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hubreplay/hubreplay/trace"
	"golang.org/x/term"
)

// openTrace opens a trace file, or standard input for "-".
func openTrace(path string, stdin io.Reader) (*trace.Reader, error) {
	if path == "-" {
		return trace.NewReader(stdin, "<stdin>")
	}
	return trace.Open(path)
}

// progress shows, on a terminal, how far through a big trace a command
// is; elsewhere (CI logs, pipes) it stays silent.
type progress struct {
	w     io.Writer
	total int64
	what  string
	next  time.Time
	shown bool
}

// newProgress returns nil, which is a silent progress, unless stderr is a
// terminal and the file is big enough to make anyone wait.
func newProgress(stderr io.Writer, path, what string) *progress {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || path == "-" {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() < 32<<20 {
		return nil
	}
	return &progress{w: stderr, total: st.Size(), what: what}
}

func (p *progress) update(off int64) {
	if p == nil || time.Now().Before(p.next) {
		return
	}
	p.next = time.Now().Add(200 * time.Millisecond)
	p.shown = true
	fmt.Fprintf(p.w, "\r%s: %3.0f%% of %d MB", p.what, 100*float64(off)/float64(p.total), p.total>>20)
}

func (p *progress) done() {
	if p != nil && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
