// Command testsummary reads `go test -json` on stdin and prints what a
// person needs from a long test run: a line per package as go test prints
// it, each failed test's own output (its last lines, not thousands), and
// at the end every skipped test with its reason. It exits 1 when anything
// failed, so that `make test` does.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// event is one line of test2json's output.
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// maxLines bounds what is shown of one failed test's output.
const maxLines = 60

type key struct{ pkg, test string }

type summary struct {
	out     map[key][]string // output so far, per test (test "": the package's own)
	failed  []key
	skipped []key
	reasons map[key]string
	pkgFail bool
}

func main() { os.Exit(run(os.Stdin, os.Stdout, os.Stderr)) }

// run summarizes the events on r to w: status 1 when anything failed.
func run(r io.Reader, w, errw io.Writer) int {
	s := &summary{out: map[key][]string{}, reasons: map[key]string{}}
	if err := s.read(r, w); err != nil {
		fmt.Fprintln(errw, "testsummary: read go test -json:", err)
		return 2
	}
	s.report(w)
	if s.pkgFail || len(s.failed) > 0 {
		return 1
	}
	return 0
}

// read consumes the events, printing each package's result line as it ends.
func (s *summary) read(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (a build error printed before the JSON): keep it.
			fmt.Fprintln(w, string(line))
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(w, e.Output) // a package that does not build says why
		case "output":
			s.out[k] = append(s.out[k], strings.TrimRight(e.Output, "\n"))
		case "skip":
			if e.Test != "" {
				s.skipped = append(s.skipped, k)
				s.reasons[k] = reason(s.out[k])
			} else {
				fmt.Fprintf(w, "?   \t%s\t[no test files]\n", e.Package)
			}
			delete(s.out, k)
		case "pass":
			if e.Test == "" {
				fmt.Fprintf(w, "ok  \t%s\t%s\n", e.Package, dur(e.Elapsed))
			}
			delete(s.out, k)
		case "fail":
			if e.Test == "" {
				s.pkgFail = true
				fmt.Fprintf(w, "FAIL\t%s\t%s\n", e.Package, dur(e.Elapsed))
				continue // its output is shown with the failures
			}
			s.failed = append(s.failed, k)
		}
	}
	return sc.Err()
}

// reason is what a skipped test said: its output without go test's own lines.
func reason(lines []string) string {
	var r []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		r = append(r, t)
	}
	if len(r) == 0 {
		return "(no reason given)"
	}
	return strings.Join(r, " ")
}

func (s *summary) report(w io.Writer) {
	for _, k := range s.failed {
		lines := s.out[k]
		fmt.Fprintf(w, "\n--- FAIL: %s %s\n", k.pkg, k.test)
		if len(lines) > maxLines {
			fmt.Fprintf(w, "    … %d lines before these …\n", len(lines)-maxLines)
			lines = lines[len(lines)-maxLines:]
		}
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
	// A package that failed outside any test (a panic, a build failure,
	// a timeout) has its own output.
	for k, lines := range s.out {
		if k.test != "" || !s.pkgFail || !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "FAIL") || strings.Contains(l, "panic:") }) {
			continue
		}
		fmt.Fprintf(w, "\n--- %s\n", k.pkg)
		if len(lines) > maxLines {
			lines = lines[len(lines)-maxLines:]
		}
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
	fmt.Fprintf(w, "\nskipped: %d\n", len(s.skipped))
	for _, k := range s.skipped {
		fmt.Fprintf(w, "  %s %s: %s\n", strings.TrimPrefix(k.pkg, "github.com/hubreplay/hubreplay/"), k.test, s.reasons[k])
	}
	if s.pkgFail || len(s.failed) > 0 {
		fmt.Fprintf(w, "FAILED: %d tests\n", len(s.failed))
	}
}

func dur(sec float64) string {
	return (time.Duration(sec * float64(time.Second))).Round(time.Millisecond).String()
}
