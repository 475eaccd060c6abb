package compare

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/replay"
)

// figs is a run's figures with the ones the checks read.
func figs(p99ms int64, failed int, sockets int) *Figures {
	return &Figures{Requests: 1000, Failed: failed, ErrorRate: float64(failed) / 1000,
		Latency:  replay.Percentiles{Count: 1000, P99: p99ms * 1000},
		Sessions: 10, Connected: 10, ConnectRate: 1, FramesWant: 100, FramesOK: 100, Delivery: 1,
		Proxy: &Resources{Samples: 30, SocketsStart: 3, SocketsEnd: 3 + sockets}}
}

func classes(v Verdict) map[string]Class {
	out := map[string]Class{}
	for _, c := range v.Checks {
		out[c.Name] = c.Class
	}
	return out
}

// Each figure is judged both ways: worse, better or the same, and what was
// not measured is never a pass.
func TestVerdictBothWays(t *testing.T) {
	th := DefaultThresholds()
	a := figs(20, 2, 0)

	same := judge(a, figs(21, 3, 1), nil, th)
	assert.False(t, same.Regression)
	assert.False(t, same.Unanswered)
	for name, c := range classes(same) {
		assert.Equal(t, Same, c, name)
	}

	worse := judge(a, figs(20, 60, 40), nil, th)
	assert.True(t, worse.Regression)
	assert.Equal(t, Worse, classes(worse)["failed requests"])
	assert.Equal(t, Worse, classes(worse)["sockets left open"])
	assert.Len(t, worse.Reasons, 2)
	assert.Empty(t, worse.Better)

	// The mirror: the same two runs the other way round.
	better := judge(figs(20, 60, 40), a, nil, th)
	assert.False(t, better.Regression)
	assert.Equal(t, Better, classes(better)["failed requests"])
	assert.Equal(t, Better, classes(better)["sockets left open"])
	assert.Len(t, better.Better, 2)
	assert.Contains(t, better.Better[0], "failed requests 0.20% against A's 6.00%")

	// Worse on one, better on another: both are said.
	mixed := judge(figs(20, 60, 0), figs(20, 2, 40), nil, th)
	assert.True(t, mixed.Regression)
	assert.Equal(t, Better, classes(mixed)["failed requests"])
	assert.Equal(t, Worse, classes(mixed)["sockets left open"])

	// The noise between A's runs widens "the same" both ways.
	noisy := judge(a, figs(20, 2, 40), []*Figures{figs(20, 2, 45)}, th)
	assert.Equal(t, Same, classes(noisy)["sockets left open"])
}

func TestVerdictUnmeasuredIsNoPass(t *testing.T) {
	th := DefaultThresholds()
	a, b := figs(20, 2, 0), figs(20, 2, 0)
	b.Proxy = nil // plain replay results: no samples of the proxy
	v := judge(a, b, nil, th)
	assert.False(t, v.Regression)
	assert.True(t, v.Unanswered, "a check in force that was not measured leaves the comparison without an answer")
	c := classes(v)
	assert.Equal(t, Unmeasured, c["memory kept after idle"])
	assert.Equal(t, Unmeasured, c["sockets left open"])
	assert.Equal(t, Unmeasured, c["liveness probe unanswered"])
	require.NotEmpty(t, v.Unmeasured)
	assert.Contains(t, v.Unmeasured[0], "not measured for B")
	for _, ch := range v.Checks {
		if ch.Class == Unmeasured {
			assert.NotEqual(t, Same, ch.Class)
		}
	}

	// Turned off, the same checks are not judged, and the rest answer.
	th.Off = map[string]bool{"memory kept after idle": true, "sockets left open": true}
	th.FailOnRestart = false
	v = judge(a, b, nil, th)
	assert.False(t, v.Unanswered, "%v", v.Unmeasured)
	assert.Equal(t, Off, classes(v)["sockets left open"])
	assert.Equal(t, Same, classes(v)["failed requests"])

	// A trace without WebSockets: those checks do not apply; not a gap.
	a, b = figs(20, 2, 0), figs(20, 2, 0)
	for _, f := range []*Figures{a, b} {
		f.Sessions, f.Connected, f.FramesWant, f.FramesOK = 0, 0, 0, 0
	}
	v = judge(a, b, nil, DefaultThresholds())
	assert.False(t, v.Unanswered)
	assert.Equal(t, NotApplicable, classes(v)["WebSocket connects failed"])
}

func TestHeadlineSaysBothWays(t *testing.T) {
	mk := func(a, b *Figures) *Report {
		a.Spec, b.Spec = "chp@A", "chp@B"
		r := &Report{Runs: []*Figures{a, b}, Speed: 10}
		r.Verdict = judge(a, b, nil, DefaultThresholds())
		return r
	}
	assert.Regexp(t, `^REGRESSION: chp@B is worse than chp@A — .*sockets left open.*; better on failed requests`, mk(figs(20, 60, 0), figs(20, 2, 40)).Headline())
	assert.Regexp(t, `^BETTER: chp@B is better than chp@A — failed requests .*; the same on latency p99`, mk(figs(20, 60, 0), figs(20, 2, 0)).Headline())
	assert.Regexp(t, `^SAME: chp@B is neither worse nor better than chp@A within the thresholds`, mk(figs(20, 2, 0), figs(20, 2, 0)).Headline())
	b := figs(20, 2, 0)
	b.Proxy = nil
	assert.Regexp(t, `^NO ANSWER: chp@B could not be judged against chp@A — memory kept after idle: not measured for B`, mk(figs(20, 2, 0), b).Headline())
}
