// Package memlimit bounds the Go heap of a long-running harness process to
// what it holds for good plus a fixed headroom, so that its RSS follows
// the trace's size and not the garbage collector's doubling of it; and it
// reads a process's peak RSS.
package memlimit

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

// Headroom is what a run's own memory (connections, buffers, results on
// their way to disk) may take on top of what is held for good: a
// 300-student peak's replay at 10× needs less than half of it.
const Headroom = 256 << 20

// Bound sets the runtime's soft memory limit to the live heap now (after
// a collection) plus headroom, and returns it; GOMEMLIMIT in the
// environment wins (0 returned). Call it once the long-lived data (the
// trace's records, plan and index) is built. The limit is soft: a process
// that needs more gets it, at the cost of collections, which the runtime
// holds to half the processor time.
func Bound(headroom int64) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	limit := int64(s[0].Value.Uint64()) + headroom
	debug.SetMemoryLimit(limit)
	return limit
}

// PeakRSS is a process's peak resident set so far (VmHWM), false once it
// has exited (a zombie has no memory left to count). Unlike getrusage's
// ru_maxrss, it is the process's own: a process started by fork (or vfork)
// and exec inherits its parent's peak in ru_maxrss.
func PeakRSS(pid int) (int64, bool) { return statusBytes(pid, "VmHWM:") }

// statusBytes reads one of the sizes /proc/PID/status gives in kB.
func statusBytes(pid int, field string) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}
