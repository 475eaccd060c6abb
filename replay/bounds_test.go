package replay_test

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/replay"
)

// wsCeiling is the documented bound (README, BENCHMARKS.md) on the
// replayer's heap while it holds 10,000 WebSocket sessions open.
const wsCeiling = 128 << 20

// 10,000 WebSocket sessions open at once in one replaying process (the
// fixtures in another): its heap stays under the documented ceiling, and
// every session connects and gets its frames.
func TestTenThousandWebSocketsAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 WebSockets: not in -short")
	}
	const sessions = 10_000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < sessions+512 {
		t.Skipf("needs %d open files per process (ulimit -n); this one may have %d", sessions+512, lim.Cur)
	}
	// Sessions open over the first 4 s and stay open to 60 s; the heap is
	// measured once all are open. On a loaded machine opening them can
	// take many seconds: they stay open long enough for all to be open at
	// once (at 12 s, 775 and then 28 of them were not, under make test).
	const hold = 60 * time.Second
	path := benchScaleTrace(t, sessions, 0, hold)
	target := fixturesProcess(t, path)
	p := plan(t, path, replay.Options{Speed: 1})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	run := &replay.Runner{Target: target, Timeout: 30 * time.Second}
	measured := make(chan [2]int64, 1)
	go func() {
		for pr := run.Progress(); pr.OpenWS < sessions && pr.Elapsed < hold-time.Second; pr = run.Progress() {
			time.Sleep(50 * time.Millisecond)
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		measured <- [2]int64{int64(m.HeapAlloc) - int64(before.HeapAlloc), run.Progress().OpenWS}
	}()
	sum, err := run.Run(context.Background(), p)
	require.NoError(t, err)
	m := <-measured
	t.Logf("%d WebSockets open: %d MiB of heap (%d B each)", m[1], m[0]>>20, m[0]/max(1, m[1]))
	assert.Equal(t, int64(sessions), m[1], "all open at once")
	assert.Less(t, m[0], int64(wsCeiling))
	assert.Equal(t, sessions, sum.Connected, "%v", sum.SessionErrors)
	assert.Equal(t, sum.FramesExpected, sum.FramesMatched)
}
