package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/compare"
	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/internal/toyproxy"
)

// toyPeak generates a small lecture peak (25 students, 5 minutes) and
// builds the toy proxy, in a new directory.
func toyPeak(t *testing.T) (dir, peak, bin string) {
	t.Helper()
	dir = t.TempDir()
	peak = filepath.Join(dir, "peak.trace")
	r := hubreplay(t, nil, "generate", "lecture-peak", "--users", "25", "--duration", "5m", "-o", peak)
	require.Equal(t, 0, r.code, r.stderr)
	testenv.Need(t, "go")
	bin, err := toyproxy.Build(context.Background(), dir)
	require.NoError(t, err)
	return dir, peak, bin
}

// The exit status CI acts on: 1 for a regression, with the report naming
// why; 0 for A against itself; 2 when the comparison cannot be made.
func TestCompareExitStatus(t *testing.T) {
	dir, peak, bin := toyPeak(t)
	good, broken := toyproxy.Spec(bin), toyproxy.Spec(bin, "--fail-503", "0.05")
	out := filepath.Join(dir, "out")
	summary := filepath.Join(dir, "step-summary.md")
	t.Setenv("GITHUB_STEP_SUMMARY", summary)

	r := hubreplay(t, nil, "compare", "--trace", peak, "--a", good, "--b", broken, "--noise-runs", "1", "--speed", "60", "--settle", "1s", "-o", out)
	require.Equal(t, 1, r.code, "a regression: %s", r.stderr)
	assert.Contains(t, r.stderr, "A (cmd:exec", "progress names each run")
	assert.Contains(t, r.stderr, "replaying")
	assert.Contains(t, r.stderr, "REGRESSION")
	assert.Contains(t, r.stdout, "of requests failed", "the Markdown report on stdout names why")
	for _, f := range []string{"A.results", "B.results", "A-noise.results", "report.html", "report.md", "report.json"} {
		assert.FileExists(t, filepath.Join(out, f))
	}
	md, err := os.ReadFile(summary)
	require.NoError(t, err)
	assert.Contains(t, string(md), "## ❌ hubreplay compare", "the report went to the GitHub step summary")
	var rep compare.Report
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rep))
	require.Len(t, rep.Runs, 3)
	assert.True(t, rep.Verdict.Regression)
	assert.Positive(t, rep.Runs[1].ProxyStatus["503"])

	// A against its own second run, from the stored results: no regression
	// (latency aside: see TestVerdict on p99 under the race detector).
	r = hubreplay(t, nil, "report", filepath.Join(out, "A.results"), filepath.Join(out, "A-noise.results"), "--min-p99-delta", "1s", "-o", filepath.Join(dir, "same"))
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "SAME: ")
	assert.FileExists(t, filepath.Join(dir, "same", "report.html"))
	st, err := os.Stat(filepath.Join(dir, "same", "report.md"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm(), "reports are as readable as the results")
	// Reports already there are replaced only with --force, as every writer asks.
	r = hubreplay(t, nil, "report", filepath.Join(out, "A.results"), filepath.Join(out, "A-noise.results"), "-o", filepath.Join(dir, "same"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "give --force")
	r = hubreplay(t, nil, "report", filepath.Join(out, "A.results"), filepath.Join(out, "A-noise.results"), "--min-p99-delta", "1s", "-o", filepath.Join(dir, "same"), "--force")
	assert.Equal(t, 0, r.code, r.stderr)

	// The same regression, judged again with looser failure thresholds,
	// passes (latency and WebSocket delivery aside: under make test B's
	// lost sessions vary from run to run; the 503s are what is re-judged).
	r = hubreplay(t, nil, "report", filepath.Join(out, "A.results"), filepath.Join(out, "B.results"), "--max-error-rate", "20%", "--max-ws-loss", "off",
		"--min-p99-delta", "1s", "--max-rss-growth", "off", "-o", filepath.Join(dir, "loose"))
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `Not judged: .*memory kept after idle: not judged`, r.stdout, "a check turned off is shown as such")
	r = hubreplay(t, nil, "report", filepath.Join(out, "A.results"), filepath.Join(out, "B.results"), "--max-sockets-left", "some")
	assert.Equal(t, 2, r.code, r.stderr)

	// A comparison that cannot be made: exit status 2, with the reason.
	dead := "cmd:echo gone; exit 3 # {port}"
	r = hubreplay(t, nil, "compare", "--trace", peak, "--a", dead, "--b", good, "--speed", "60", "-o", filepath.Join(dir, "dead"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "run A (cmd:echo gone")
	assert.Contains(t, r.stderr, "exited before it was ready")
	assert.NotRegexp(t, `B \(cmd:[^\n]*\): (starting|replaying)`, r.stderr, "B is not run after A failed (only obtained, before A)")
	assert.NoFileExists(t, filepath.Join(dir, "dead", "B.results"))
	r = hubreplay(t, nil, "compare", "--trace", filepath.Join(dir, "missing.trace"), "--a", good, "--b", good)
	assert.Equal(t, 2, r.code, r.stderr)
	r = hubreplay(t, nil, "report", filepath.Join(out, "A.results"), peak)
	assert.Equal(t, 2, r.code, "a trace is not results: %s", r.stderr)
	r = hubreplay(t, nil, "compare", "--trace", peak, "--a", "chp@4.5.6")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "--b SPEC")
}

// A comparison run faster than the harness keeps a schedule at (here max:
// none at all) is no regression: its headline says SATURATED and names what
// it leaves out of the verdict.
func TestTooFastIsSaturatedNotARegression(t *testing.T) {
	dir, peak, bin := toyPeak(t)
	t.Setenv("HUBREPLAY_CACHE", filepath.Join(dir, "cache"))
	out := filepath.Join(dir, "out")
	r := hubreplay(t, nil, "compare", "--trace", peak, "--a", toyproxy.Spec(bin), "--b", toyproxy.Spec(bin), "--speed", "max", "--settle", "1s", "-o", out)
	assert.Equal(t, 0, r.code, r.stderr)
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	require.NoError(t, err)
	// (At max speed the candidate may be at a full core as well: said too.)
	assert.Regexp(t, `\*\*Saturated\*\* — the harness(, not the candidate,)? was the bottleneck.*left out of the verdict: latency, timeouts, WebSocket connects, frames delivered in order and in time, route API latency, probe silences`, string(md))
	assert.Regexp(t, `(?m)^SATURATED: the harness(, not the candidate,)? was the bottleneck.* \(.*at max speed.*\); left out of the verdict: latency, timeouts, WebSocket connects, frames delivered in order and in time, route API latency, probe silences`, r.stderr)
	assert.NotContains(t, string(md), "route_missing", "at max speed every route the trace adds is in place throughout")
}
