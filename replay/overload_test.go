package replay_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
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

// A target that accepts connections and never answers (a hung proxy): the
// requests time out; those that earlier answers held back past the
// timeout time out unsent (taking no time), so that the connection catches
// up with the trace: about one request in three is sent, here 100 ms apart
// with a 300 ms timeout, instead of every one, each a timeout later.
func TestHungTargetTimesOutUnsent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var accepted atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { _, _ = io.Copy(io.Discard, c) }() // read, never answer
		}
	}()
	t.Cleanup(func() { _ = l.Close() })

	// One connection, 10 requests 100 ms apart.
	path := benchTrace(t, 1, 10, 0, 0, 100*time.Millisecond, 0, 2*time.Second)
	p := plan(t, path, replay.Options{Speed: 1})
	out := &memResults{}
	sum, err := (&replay.Runner{Target: "http://" + l.Addr().String(), Results: out, Timeout: 300 * time.Millisecond}).Run(context.Background(), p)
	require.NoError(t, err)
	assert.Equal(t, 10, sum.Requests)
	assert.Equal(t, 10, sum.Errors[replay.ErrTimeout], "%v", sum.Errors)
	var unsent int
	for _, r := range out.read(t).Requests {
		if strings.HasPrefix(r.Detail, "not sent: held") {
			unsent++
		}
	}
	assert.GreaterOrEqual(t, unsent, 5, "requests held back past the timeout are not sent")
	assert.Equal(t, int64(10-unsent), accepted.Load(), "each sent request took a connection (the last one timed out)")
}
