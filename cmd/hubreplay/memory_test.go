package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/fixtures/lecturepeak"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

// peakHeapCeiling is the documented bound (BENCHMARKS.md) on what compare
// holds of a 300-student, 30-minute lecture peak before its first run: the
// trace's records, the plan and the fixtures' index. The process stays
// under 512 MiB of RSS with the runs' own memory on top.
const peakHeapCeiling = 256 << 20

// compare decodes the trace once: the plan's requests and the fixtures'
// index are the same records, and the 300-student peak fits the ceiling.
func TestPlanAndIndexShareOneDecode(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30-minute lecture peak: not in -short")
	}
	path := filepath.Join(t.TempDir(), "peak.trace")
	h, recs := lecturepeak.Generate(lecturepeak.Options{Users: 300, Duration: 30 * time.Minute, Seed: 11})
	data, err := tracetest.Encode(h, nil, recs)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	recs, data = nil, nil

	ctx := context.Background()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	play := &playFlags{speed: "10", users: "1", jitter: time.Minute, seed: 1}
	plan, read, err := play.plan(ctx, path, nil, io.Discard)
	require.NoError(t, err)
	ix, err := fixtures.BuildIndex(ctx, read, nil)
	require.NoError(t, err)
	read = nil
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d requests, %d WebSocket sessions: plan and index hold %d MiB of heap", plan.Requests, plan.Sessions, held>>20)

	require.Greater(t, plan.Requests, 200_000, "a lecture peak's worth")
	shared, steps := 0, 0
	for _, c := range plan.Conns {
		for _, s := range c.Steps {
			steps++
			if ix.Exchanges[s.Record] == s.HTTP {
				shared++
			}
		}
	}
	assert.Equal(t, steps, shared, "every request the plan sends is the record the fixtures answer from, not a second copy")
	assert.Less(t, held, int64(peakHeapCeiling))
	runtime.KeepAlive(plan)
	runtime.KeepAlive(ix)
}
