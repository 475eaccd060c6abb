package replay_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

// replayTo runs a plan against the emulators and writes a results file.
func replayTo(t *testing.T, target string, p *replay.Plan, out string) *replay.Summary {
	t.Helper()
	w, err := replay.CreateResults(out, "test", false)
	require.NoError(t, err)
	run := &replay.Runner{Target: target, Results: w, Timeout: 5 * time.Second}
	sum, err := run.Run(context.Background(), p)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	// No proxy stands between: the emulators' reset of a request whose
	// server was not there (a proxy turns it into its own 503) reaches
	// the replayer itself. Nothing else fails.
	noServer := 0
	for _, c := range p.Conns {
		for _, s := range c.Steps {
			if s.HTTP.ProxyAnswered() && !s.HTTP.Upgrade {
				noServer++
			}
		}
	}
	require.Equal(t, noServer, sum.Failed, "%v", sum.Errors)
	return sum
}

// Three shards replayed apart merge into the results of the whole trace:
// every request once, the tally of them all.
func TestShardResultsMerge(t *testing.T) {
	path := peakFile(t)
	ix, _, srv := fixturesFor(t, path, 1e6)
	dir := t.TempDir()
	target := srv.Target(ix.Targets[0]) // any emulator answers any record
	var files []string
	var requests, sessions int
	for i := range 3 {
		p := plan(t, path, replay.Options{Speed: 0, Shard: replay.Shard{Index: i, Count: 3}})
		out := filepath.Join(dir, "shard"+string(rune('0'+i))+".results")
		sum := replayTo(t, target, p, out)
		requests += sum.Requests
		sessions += sum.Sessions
		files = append(files, out)
	}
	whole := plan(t, path, replay.Options{Speed: 0})
	require.Equal(t, whole.Requests, requests)

	merged := filepath.Join(dir, "all.results")
	sum, err := replay.Merge(context.Background(), merged, false, files...)
	require.NoError(t, err)
	assert.Equal(t, requests, sum.Requests)
	assert.Equal(t, sessions, sum.Sessions)
	assert.Equal(t, int64(requests), sum.Percentiles[replay.HistSendError].Count, "histograms merged")
	res, err := replay.ReadResults(context.Background(), merged)
	require.NoError(t, err)
	assert.Len(t, res.Runs, 3, "each shard's run record is kept")
	assert.Len(t, res.Requests, requests)
	records := map[int64]int{}
	for _, q := range res.Requests {
		records[q.Record]++
	}
	for num, n := range records {
		assert.Equal(t, 1, n, "record %d once", num)
	}
	require.Len(t, res.Ends, 1)
	assert.Equal(t, requests, res.Ends[0].Tally.Requests)

	_, err = replay.Merge(context.Background(), filepath.Join(dir, "twice.results"), false, files[0], files[0])
	assert.ErrorContains(t, err, "both shard 0/3")

	// A missing shard, or a shard of another run, is refused with the reason.
	_, err = replay.Merge(context.Background(), filepath.Join(dir, "part.results"), false, files[0], files[2])
	assert.EqualError(t, err, "merge: shard 1/3 of this run is missing; merge all 3 shards")
	other := filepath.Join(dir, "other.results")
	replayTo(t, target, plan(t, path, replay.Options{Speed: 0, Seed: 99, Shard: replay.Shard{Index: 1, Count: 3}}), other)
	_, err = replay.Merge(context.Background(), filepath.Join(dir, "mixed.results"), false, files[0], other, files[2])
	assert.ErrorContains(t, err, "are results of different runs (seed")
	for _, name := range []string{"part.results", "mixed.results"} {
		assert.NoFileExists(t, filepath.Join(dir, name), "nothing is written")
	}
}

// A results file cut short (a replay killed mid-run) reads up to the cut,
// says where, and is not taken for a trace or the other way round.
func TestResultsDamageAndKind(t *testing.T) {
	h, recs := session()
	path := writeTrace(t, h, recs)
	_, _, srv := fixturesFor(t, path, 1e6)
	out := filepath.Join(t.TempDir(), "r.results")
	replayTo(t, srv.Target("http://h-0000aaaa:8888"), plan(t, path, replay.Options{Speed: 0}), out)

	b, err := os.ReadFile(out)
	require.NoError(t, err)
	cut := filepath.Join(t.TempDir(), "cut.results")
	require.NoError(t, os.WriteFile(cut, b[:len(b)*2/3], 0o644))
	res, err := replay.ReadResults(context.Background(), cut)
	var de *trace.DamageError
	require.ErrorAs(t, err, &de)
	assert.True(t, de.Truncated)
	assert.Contains(t, err.Error(), cut)
	require.NotNil(t, res)
	assert.Len(t, res.Runs, 1, "what came before the cut is there")

	_, err = trace.Open(out)
	assert.ErrorContains(t, err, "it is a hubreplay results file")
	_, err = replay.ReadResults(context.Background(), path)
	assert.ErrorContains(t, err, "not a hubreplay results file: it is a hubreplay trace file")
}
