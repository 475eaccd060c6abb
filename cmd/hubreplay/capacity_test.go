package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/compare"
	"github.com/hubreplay/hubreplay/internal/toyproxy"
)

// capacity replays the busiest stretch at rising speeds, says up to which
// this machine's harness holds the trace, and keeps each step where compare
// reads it before a run.
func TestCapacityFindsTheSpeedTheHarnessHolds(t *testing.T) {
	dir, peak, bin := toyPeak(t)
	t.Setenv("HUBREPLAY_CACHE", filepath.Join(dir, "cache"))

	r := hubreplay(t, nil, "capacity", "--trace", peak, "--speeds", "max")
	assert.Equal(t, 2, r.code, "max keeps no schedule: nothing to hold: %s", r.stderr)

	out := filepath.Join(dir, "probe")
	// A short stretch: on a loaded machine every step may saturate, and the
	// probe halves the speed down to 0.5x, where the stretch is what a step
	// replays (at high speeds, a minute's worth of the trace).
	r = hubreplay(t, nil, "capacity", "--trace", peak, "--candidate", toyproxy.Spec(bin), "--speeds", "40,80", "--stretch", "1m", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `busiest minute from \+`, r.stderr)
	steps := regexp.MustCompile(`(?m)^at ([\d.]+x) \((\d+) requests a second at the peak\): (held|SATURATED)`).FindAllStringSubmatch(r.stderr, -1)
	require.NotEmpty(t, steps, r.stderr)
	assert.Equal(t, "40x", steps[0][1], "the lowest speed first")
	assert.Regexp(t, `this machine's harness (holds .*peak\.trace up to --speed \d+|did not hold)`, r.stdout)
	for _, s := range steps {
		assert.FileExists(t, filepath.Join(out, "probe-"+s[1]+".results"))
	}

	// Each step is in the capacity file; compare says what it means for its speed.
	c, err := compare.LoadCapacity(filepath.Join(dir, "cache", "harness.json"))
	require.NoError(t, err)
	assert.Len(t, c.Runs, len(steps))
	r = hubreplay(t, nil, "compare", "--trace", peak, "--a", toyproxy.Spec(bin), "--b", toyproxy.Spec(bin), "--speed", "100", "--settle", "1s",
		"--from", "+4m", "-o", filepath.Join(dir, "cmp"))
	assert.LessOrEqual(t, r.code, 1, r.stderr)
	assert.Regexp(t, `(harness|warning): at 100x this trace asks for up to \d+ requests a second`, r.stderr)
	_, err = os.Stat(filepath.Join(dir, "cache", "harness.json"))
	assert.NoError(t, err)
}
