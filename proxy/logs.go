package proxy

import (
	"regexp"
	"strings"
	"sync"
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

// logBook counts a candidate's log lines by kind and keeps the last ones.
type logBook struct {
	mu     sync.Mutex
	counts map[string]int64
	last   []string // ring of the last lines
	next   int
	total  int64
}

const keptLines = 40

func newLogBook() *logBook {
	return &logBook{counts: map[string]int64{}, last: make([]string, 0, keptLines)}
}

func (b *logBook) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total++
	for _, k := range logKinds {
		if k.re.MatchString(line) {
			b.counts[k.name]++
		}
	}
	if len(line) > 500 {
		line = line[:500] + "…"
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
