// Package wait sleeps the way every timed part of hubreplay must: until a
// moment or for a while, cut short when the context ends.
package wait

import (
	"context"
	"time"
)

// For waits d, or less if ctx ends; it reports whether ctx is still live.
func For(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Until waits for the moment t; false if ctx ended first.
func Until(ctx context.Context, t time.Time) bool { return For(ctx, time.Until(t)) }

// Every calls f every d until ctx ends (the first call after d).
func Every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
