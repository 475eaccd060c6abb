// Command sampletrace writes a sample trace (tracetest.Sample) to a file:
// the input of `make demo` and `make bench` until the capture and the
// lecture-peak generator exist.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

func main() {
	out := flag.String("o", "sample.trace", "trace file to write")
	users := flag.Int("users", 40, "users in the session")
	dur := flag.Duration("duration", 15*time.Minute, "length of the session")
	seed := flag.Uint64("seed", 1, "random seed; the same seed gives the same trace")
	force := flag.Bool("force", false, "replace the output file if it exists")
	flag.Parse()

	h, recs := tracetest.Sample(tracetest.SampleOptions{Seed: *seed, Users: *users, Duration: *dur})
	w, err := trace.Create(*out, h, &trace.WriterOptions{Overwrite: *force})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sampletrace:", err)
		os.Exit(1)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			fmt.Fprintln(os.Stderr, "sampletrace:", err)
			os.Exit(1)
		}
	}
	if err := w.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "sampletrace:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %d records, %d users, %s\n", *out, len(recs)+1, *users, *dur)
}
