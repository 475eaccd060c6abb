package main

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/compare"
	"github.com/hubreplay/hubreplay/internal/toyproxy"
)

// capacity replays the trace at rising speeds as compare would, says up to
// which this machine's harness holds it, and keeps each step where compare
// reads it before a run; a quick look at a stretch is printed, not kept.
func TestCapacityFindsTheSpeedTheHarnessHolds(t *testing.T) {
	dir, peak, bin := toyPeak(t)
	t.Setenv("HUBREPLAY_CACHE", filepath.Join(dir, "cache"))
	file := filepath.Join(dir, "cache", "harness.json")

	r := hubreplay(t, nil, "capacity", "--trace", peak, "--speeds", "max")
	assert.Equal(t, 2, r.code, "max keeps no schedule: nothing to hold: %s", r.stderr)
	r = hubreplay(t, nil, "capacity", "--trace", peak, "--stretch", "1m", "--from", "+4m")
	assert.Equal(t, 2, r.code, "a stretch or a window, not both: %s", r.stderr)
	assert.Contains(t, r.stderr, "give one or the other")

	steps := regexp.MustCompile(`(?m)^at ([\d.]+x) \((\d+) requests a second at the peak\): (held|SATURATED)`)
	// The quick look: the stretch before the busiest minute, kept nowhere.
	quick := filepath.Join(dir, "quick")
	r = hubreplay(t, nil, "capacity", "--trace", peak, "--candidate", toyproxy.Spec(bin), "--speeds", "80", "--stretch", "1m", "-o", quick)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `busiest minute from \+`, r.stderr)
	assert.Contains(t, r.stderr, "not kept in the capacity file")
	require.NotEmpty(t, steps.FindAllStringSubmatch(r.stderr, -1), r.stderr)
	assert.NoFileExists(t, file, "a stretch may hold where the whole trace does not")

	// The last minute, whole, as compare --from +4m replays it. On a loaded
	// machine every step may saturate, and the probe halves the speed down
	// to 0.5x: a minute keeps that short.
	out := filepath.Join(dir, "probe")
	r = hubreplay(t, nil, "capacity", "--trace", peak, "--candidate", toyproxy.Spec(bin), "--speeds", "40,80", "--from", "+4m", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `[\dms]+ of trace time from \+4m0s as compare replays it`, r.stderr)
	found := steps.FindAllStringSubmatch(r.stderr, -1)
	require.NotEmpty(t, found, r.stderr)
	assert.Equal(t, "40x", found[0][1], "the lowest speed first")
	assert.Regexp(t, `this machine's harness (holds .*peak\.trace up to --speed \d+|did not hold)`, r.stdout)
	for _, s := range found {
		assert.FileExists(t, filepath.Join(out, "probe-"+s[1]+".results"))
	}

	// Each step is in the capacity file; compare says what it means for its speed.
	c, err := compare.LoadCapacity(file)
	require.NoError(t, err)
	assert.Len(t, c.Runs, len(found))
	r = hubreplay(t, nil, "compare", "--trace", peak, "--a", toyproxy.Spec(bin), "--b", toyproxy.Spec(bin), "--speed", "100", "--settle", "1s",
		"--from", "+4m", "-o", filepath.Join(dir, "cmp"))
	assert.LessOrEqual(t, r.code, 1, r.stderr)
	assert.Regexp(t, `(harness|warning): at 100x this trace asks for up to \d+ requests a second`, r.stderr)
	c, err = compare.LoadCapacity(file)
	require.NoError(t, err)
	assert.Len(t, c.Runs, len(found)+2, "and both runs of the comparison")
}
