package replay_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/replay"
)

// Fixtures in the replaying process, overloaded: 1,500 connections (1,200
// keep-alive, 300 WebSockets) open in the same instant at max speed, and
// the process may hold only 1,024 files. Nothing is lost: every request
// and frame is answered as recorded, because the replayer leaves the
// fixtures their half of the files (connections beyond it wait their
// turn, which shows as send-time error, not as failures of the proxy).
func TestOverloadedFixturesLoseNothing(t *testing.T) {
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	low := lim
	low.Cur = min(lim.Cur, 1024)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })

	path := benchTrace(t, 1200, 3, 300, 3, time.Millisecond, 0, time.Second)
	_, _, srv := fixturesFor(t, path, 1e9)
	p := plan(t, path, replay.Options{Speed: 0})
	// Without FixturesInProcess the replayer takes files the fixtures
	// need to accept with, and about 40% of the frames go unanswered.
	run := &replay.Runner{Target: srv.Hub(), FixturesInProcess: true, Timeout: 10 * time.Second}
	sum, err := run.Run(context.Background(), p)
	require.NoError(t, err)
	assert.Equal(t, p.Requests, sum.Requests, "every request accounted for")
	assert.Zero(t, sum.Failed, "no request failed: %v", sum.Errors)
	assert.Equal(t, 300, sum.Connected, "every WebSocket connected: %v", sum.SessionErrors)
	assert.Equal(t, sum.FramesExpected, sum.FramesMatched, "every frame answered in order")
	t.Logf("%d requests, %d frames; send-time error p99 %d µs", sum.Requests, sum.FramesMatched, sum.Percentiles[replay.HistSendError].P99)
}
