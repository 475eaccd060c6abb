// Package sockstat reads the machine's socket summary (/proc/net/sockstat).
//
// A candidate that closes its clients' connections after every answer
// (CHP 4.5.x does) leaves tens of thousands of loopback sockets in
// TIME_WAIT when replayed fast. For the next minute every new connection
// on the machine has to find a port around them, which costs the next run
// processor time its own candidate did not cause: runs wait them out.
package sockstat

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hubreplay/hubreplay/internal/wait"
)

// File is the kernel's summary; a variable so that tests can point it
// elsewhere.
var File = "/proc/net/sockstat"

// TimeWait is how many TCP sockets are in TIME_WAIT on the machine.
func TimeWait() (int, error) {
	b, err := os.ReadFile(File)
	if err != nil {
		return 0, fmt.Errorf("read sockets in TIME_WAIT: %w", err)
	}
	return parse(b)
}

// parse finds "tw N" on the TCP line.
func parse(b []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 || string(f[0]) != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if string(f[i]) == "tw" {
				n, err := strconv.Atoi(string(f[i+1]))
				if err != nil {
					return 0, fmt.Errorf("%s: TCP tw %q: %w", File, f[i+1], err)
				}
				return n, nil
			}
		}
	}
	return 0, fmt.Errorf("%s: no TCP tw count", File)
}

// Linger is how long Linux keeps a socket in TIME_WAIT (TCP_TIMEWAIT_LEN,
// fixed at 60 s), with a margin: past it, what is left was not left by
// an earlier run.
const Linger = 62 * time.Second

// Drain waits until fewer than below TCP sockets are in TIME_WAIT, at
// most Linger, checking every poll. It returns how many were there when
// it started and when it stopped; where the count cannot be read (not
// Linux) it does not wait.
func Drain(ctx context.Context, below int, poll time.Duration) (before, after int, err error) {
	before, err = TimeWait()
	if err != nil {
		return 0, 0, err
	}
	after = before
	for end := time.Now().Add(Linger); after >= below && time.Now().Before(end); {
		if !wait.For(ctx, poll) {
			return before, after, ctx.Err()
		}
		if after, err = TimeWait(); err != nil {
			return before, after, err
		}
	}
	return before, after, nil
}
