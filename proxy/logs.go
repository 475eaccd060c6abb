package proxy

import (
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// heapLimitRE is Node's message when it dies at its heap limit.
var heapLimitRE = regexp.MustCompile(`(?i)heap limit|JavaScript heap out of memory`)

// logKinds are the candidate log lines that matter in the incidents, by
// the name they are counted under. A line may count under several.
var logKinds = []struct {
	name string
	re   *regexp.Regexp
}{
	{"epipe", regexp.MustCompile(`EPIPE`)},
	{"econnreset", regexp.MustCompile(`ECONNRESET`)},
	{"econnrefused", regexp.MustCompile(`ECONNREFUSED`)},
	{"etimedout", regexp.MustCompile(`ETIMEDOUT`)},
	{"socket_hang_up", regexp.MustCompile(`(?i)socket hang up`)},
	{"uncaught", regexp.MustCompile(`(?i)uncaught exception|unhandled ?rejection|UnhandledPromiseRejection`)},
	{"heap_limit", heapLimitRE},
	{"error", regexp.MustCompile(`(?i)\berror\b`)},
}

// logBook counts a candidate's log lines by kind and keeps the last ones,
// and the first line of each kind with the stack trace after it: "B
// logged 49 uncaught exception lines" says little without the text.
type logBook struct {
	mu     sync.Mutex
	counts map[string]int64
	last   []string // ring of the last lines
	next   int
	total  int64

	firsts   map[string][]string  // kind → its first line and what followed it
	open     []string             // kinds whose first line may still be followed by its stack
	seen     map[string]time.Time // when each first line came
	reported map[string]bool      // kinds a sample has carried
	block    []string             // the latest line that is not a stack's, and the stack after it
}

const (
	keptLines = 40
	// firstLines bounds a first occurrence: its line and the stack after.
	firstLines = 20
)

func newLogBook() *logBook {
	return &logBook{counts: map[string]int64{}, last: make([]string, 0, keptLines), firsts: map[string][]string{}, seen: map[string]time.Time{}, reported: map[string]bool{}}
}

func (b *logBook) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total++
	if len(line) > 500 {
		line = line[:500] + "…"
	}
	// A stack trace's lines are indented ("    at …"). Node often puts the
	// error's own line between the first line and its stack ("Uncaught
	// Exception: write EPIPE", "Error: write EPIPE", "    at …"): one
	// line that is not indented is kept before the stack begins; the next
	// ends the occurrence.
	indented := strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")
	// Node ends an error object's dump with "}" ("  code: 'EPIPE'\n}").
	cont := indented || strings.HasPrefix(line, "}")
	if cont && len(b.block) > 0 && len(b.block) < firstLines {
		b.block = append(b.block, line)
	} else if !cont {
		b.block = append(b.block[:0], line)
	}
	open := b.open[:0]
	for _, k := range b.open {
		lines := b.firsts[k]
		switch {
		case cont:
		case len(lines) == 1:
		default:
			continue // ended
		}
		if len(lines) < firstLines {
			b.firsts[k] = append(lines, line)
		}
		open = append(open, k)
	}
	b.open = open
	for _, k := range logKinds {
		if k.re.MatchString(line) {
			b.counts[k.name]++
			if _, ok := b.firsts[k.name]; !ok {
				// Inside a stack ("  code: 'EPIPE'"), the occurrence is
				// the error the stack belongs to, from its first line.
				b.firsts[k.name] = []string{line}
				if cont && len(b.block) > 1 {
					b.firsts[k.name] = slices.Clone(b.block)
				}
				b.seen[k.name] = time.Now()
				b.open = append(b.open, k.name)
			}
		}
	}
	if len(b.last) < keptLines {
		b.last = append(b.last, line)
	} else {
		b.last[b.next] = line
		b.next = (b.next + 1) % keptLines
	}
}

// snapshot returns the counts so far.
func (b *logBook) snapshot() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int64, len(b.counts))
	for k, v := range b.counts {
		out[k] = v
	}
	return out
}

// newFirsts returns the first occurrences no earlier call returned, once
// their stack traces are complete: a later line ended them, or a second
// passed (a process writes its stack at once).
func (b *logBook) newFirsts() map[string][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out map[string][]string
	for k, lines := range b.firsts {
		if b.reported[k] || (slices.Contains(b.open, k) && time.Since(b.seen[k]) < time.Second) {
			continue
		}
		if out == nil {
			out = map[string][]string{}
		}
		out[k] = slices.Clone(lines)
		b.reported[k] = true
	}
	return out
}

// has tells whether one of the last lines contains s.
func (b *logBook) has(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.last {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// tail returns the last lines, oldest first, and empties the ring (each
// exit gets the lines of its own run).
func (b *logBook) tail() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append(append([]string{}, b.last[b.next:]...), b.last[:b.next]...)
	b.last, b.next = b.last[:0], 0
	return out
}
