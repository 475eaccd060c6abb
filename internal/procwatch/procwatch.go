// Package procwatch notices when a process exits: the flight recorder
// writes out the traffic before a local proxy's crash or OOM kill.
package procwatch

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Exit is a watched process that went away.
type Exit struct {
	PID     int
	Command string // its command line, arguments separated by spaces
}

func (e Exit) String() string { return fmt.Sprintf("pid %d (%s) exited", e.PID, e.Command) }

// Matching returns the processes whose command line contains pattern,
// by PID, this process left out.
func Matching(pattern string) (map[int]string, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	out := map[int]string{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone meanwhile, or a kernel thread
		}
		cmd := string(bytes.TrimRight(bytes.ReplaceAll(b, []byte{0}, []byte{' '}), " "))
		if strings.Contains(cmd, pattern) {
			out[pid] = cmd
		}
	}
	return out, nil
}

// Watch looks every interval for the processes matching pattern and sends
// an Exit for each one that was there and is gone; processes that start
// later are watched too (a supervisor's restart). It stops when ctx ends.
func Watch(ctx context.Context, pattern string, every time.Duration, exits chan<- Exit) error {
	seen, err := Matching(pattern)
	if err != nil {
		return fmt.Errorf("watch processes: %w", err)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now, err := Matching(pattern)
		if err != nil {
			continue
		}
		for pid, cmd := range seen {
			if _, ok := now[pid]; !ok {
				select {
				case exits <- Exit{PID: pid, Command: cmd}:
				case <-ctx.Done():
					return nil
				}
			}
		}
		seen = now
	}
}
