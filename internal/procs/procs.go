// Package procs sizes the harness's share of the processors on the
// machine where it runs the candidate.
package procs

import (
	"os"
	"runtime"
)

// Harness sets how many processors run hubreplay's own goroutines (the
// replay, the fixtures, the sampler) and returns it: n if n > 0, else one
// fewer than the process may use, and at least one. The candidate thus
// keeps a processor of its own: CHP's Node.js does its work on one thread,
// and a harness spread over every processor took time from it, and spent
// more of its own on handing work between its threads. GOMAXPROCS in the
// environment wins (0 returned).
func Harness(n int) int {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0
	}
	if n <= 0 {
		n = max(1, min(runtime.NumCPU(), runtime.GOMAXPROCS(0))-1)
	}
	runtime.GOMAXPROCS(n)
	return n
}
