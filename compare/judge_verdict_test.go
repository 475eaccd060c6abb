package compare

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/internal/cpustat"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

// figs is a run's figures with the ones the checks read.
func figs(p99ms int64, failed int, sockets int) *Figures {
	return &Figures{Requests: 1000, Failed: failed, ErrorRate: float64(failed) / 1000,
		Latency: replay.Percentiles{Count: 1000, P99: p99ms * 1000}, TypicalP99: float64(p99ms),
		Sessions: 10, Connected: 10, ConnectRate: 1, FramesWant: 100, FramesOK: 100, Delivery: 1,
		Proxy: &Resources{Samples: 30, SocketsStart: 3, SocketsEnd: 3 + sockets, Probed: true,
			TCPStates: true, StatesEnd: map[string]int{"LISTEN": 3, "ESTABLISHED": sockets, "TIME_WAIT": 500}},
		API: APIFigures{Calls: 100, Latency: replay.Percentiles{Count: 100, P50: 2000, Max: 20_000}}}
}

func classes(v Verdict) map[string]Class {
	out := map[string]Class{}
	for _, c := range v.Checks {
		out[c.Name] = c.Class
	}
	return out
}

// Sockets left in a TCP state (the incident's: ESTABLISHED and
// CLOSE_WAIT connections to upstreams a vanished client left behind) and
// descriptors of connections gone (in no TCP state) are judged apart: the
// second stray from run to run by more than the first's leak. 4.6.2 then
// 4.5.6 on the 300-student peak at 5x: 81 and 80 descriptors in no state,
// 0 and 7 sockets in a state.
func TestSocketLeaksByKind(t *testing.T) {
	th := DefaultThresholds()
	run := func(established, closeWait, stateless int) *Figures {
		f := figs(20, 0, 0)
		f.Vanished = 82
		f.Proxy.SocketsEnd = 3 + established + closeWait + stateless
		f.Proxy.StatesEnd = map[string]int{"LISTEN": 3, "ESTABLISHED": established, "CLOSE_WAIT": closeWait, "TIME_WAIT": 794}
		f.Proxy.CloseWaitEnd = closeWait
		return f
	}
	fixed, leaky := run(0, 0, 81), run(5, 2, 80)
	v := judge(fixed, leaky, nil, th)
	assert.True(t, v.Regression)
	assert.Equal(t, Worse, classes(v)["sockets left open"])
	assert.Equal(t, Same, classes(v)["sockets left in no TCP state"])
	assert.Contains(t, strings.Join(v.Reasons, "\n"), "a socket leak: it left 7 sockets open after the run and idle (85 per 1,000 vanished clients, of 82), 2 of them in CLOSE_WAIT, against A's 0")
	back := judge(leaky, fixed, nil, th)
	assert.False(t, back.Regression)
	assert.Contains(t, strings.Join(back.Better, "\n"), "fewer sockets left open: 0 after the run and idle against A's 7")

	// A against A: the descriptors of gone connections strayed by 12
	// between two runs of the same proxy (76 and 88): the same.
	assert.False(t, judge(run(0, 0, 76), run(0, 0, 88), nil, th).Regression)
	// 5.3.0's way: a descriptor kept for every reset client.
	kept := judge(fixed, run(0, 0, 81+60), nil, th)
	assert.Equal(t, Worse, classes(kept)["sockets left in no TCP state"])
	assert.Contains(t, strings.Join(kept.Reasons, "\n"), "it kept 141 socket descriptors whose connections were gone (in no TCP state)")

	// A pod's samples have no states: all its sockets are judged as
	// sockets left open, and the split is not applicable.
	pod := figs(20, 0, 10)
	pod.Proxy.TCPStates, pod.Proxy.StatesEnd = false, nil
	a := figs(20, 0, 0)
	a.Proxy.TCPStates, a.Proxy.StatesEnd = false, nil
	pv := judge(a, pod, nil, th)
	assert.Equal(t, Worse, classes(pv)["sockets left open"])
	assert.Equal(t, NotApplicable, classes(pv)["sockets left in no TCP state"])
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

	// A proxy slow to confirm the hub's route changes: the median call.
	slow := figs(20, 2, 0)
	slow.API.Latency.P50, slow.API.Latency.Max = 200_000, 400_000
	v := judge(a, slow, nil, th)
	assert.Equal(t, Worse, classes(v)["route API latency"])
	assert.Contains(t, strings.Join(v.Reasons, "\n"), "the routes API answered the hub in 200.0 ms against A's 2.0 ms, the median of 100 calls")
	assert.Equal(t, Better, classes(judge(slow, a, nil, th))["route API latency"])
	near := figs(20, 2, 0)
	near.API.Latency.P50 = 9000
	assert.Equal(t, Same, classes(judge(a, near, nil, th))["route API latency"], "within --min-p99-delta")

	// The noise between A's runs widens "the same" both ways.
	noisy := judge(a, figs(20, 2, 40), []*Figures{figs(20, 2, 45)}, th)
	assert.Equal(t, Same, classes(noisy)["sockets left open"])

	// B is judged against the nearest of A's runs. 4.6.2 against itself at
	// 20x on the 300-student peak: typical p99 A 55.7 ms, B 21.8, A' 33.0.
	p99 := func(a, b, a2 float64) Class {
		fs := []*Figures{figs(20, 2, 0), figs(20, 2, 0), figs(20, 2, 0)}
		for i, x := range []float64{a, b, a2} {
			fs[i].TypicalP99 = x
		}
		return classes(judge(fs[0], fs[1], fs[2:], th))["latency p99"]
	}
	// (With B at 55.7 against 21.8 and 33.0 it is still worse: one noise
	// run cannot measure a spread that wide; the steal rule, which
	// saturated that run, is what keeps it out of the verdict.)
	assert.Equal(t, Same, p99(55.7, 21.8, 33.0))
	assert.Equal(t, Worse, p99(20, 80, 25), "60 ms held over A's runs at 20 and 25")
	assert.Equal(t, Better, p99(80, 20, 75), "and the other way")
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
	assert.Equal(t, Unmeasured, c["longest probe silence"])
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
	assert.Regexp(t, `^REGRESSION: chp@B is worse than chp@A — a socket leak: it left 40 sockets open.*; better on failed requests`, mk(figs(20, 60, 0), figs(20, 2, 40)).Headline())
	assert.Regexp(t, `^BETTER: chp@B is better than chp@A — failed requests .*; the same on latency p99`, mk(figs(20, 60, 0), figs(20, 2, 0)).Headline())
	assert.Regexp(t, `^SAME: chp@B is neither worse nor better than chp@A within the thresholds`, mk(figs(20, 2, 0), figs(20, 2, 0)).Headline())
	// A candidate at a full core set the pace: said, whatever the verdict.
	a, b := figs(20, 2, 0), figs(20, 2, 0)
	a.Role, b.Role = RoleA, RoleB
	b.Proxy.CPUBusy = 10
	assert.Regexp(t, `^SAME: .* — caution: the candidate was at a full core in B \(10 of 30 samples\): it, not the trace, set the pace there, .*; a lower --speed than 10x tests the trace$`, mk(a, b).Headline())
	assert.NotContains(t, mk(figs(20, 2, 0), figs(20, 2, 0)).Headline(), "caution")
	b = figs(20, 2, 0)
	b.Proxy = nil
	assert.Regexp(t, `^NO ANSWER: chp@B could not be judged against chp@A — memory kept after idle: not measured for B`, mk(figs(20, 2, 0), b).Headline())
}

// A saturated harness is named, and what it measured is left out of the
// verdict: latency, timeouts and probe silences no longer count against B.
func TestSaturatedHarnessIsNotBlamedOnTheCandidate(t *testing.T) {
	a, b := figs(20, 2, 0), figs(400, 2, 0)
	b.Failed += 100
	b.ErrorRate = float64(b.Failed) / 1000
	b.Errors = map[string]int{replay.ErrTimeout: 100}
	b.Proxy.Silences = []Silence{{From: time.Minute, Len: 12 * time.Second}}
	a.Role, a.Spec, b.Role, b.Spec = "A", "chp@A", "B", "chp@B"

	// Unsaturated, all three count against B.
	v := judge(a, b, nil, DefaultThresholds())
	assert.True(t, v.Regression)
	assert.Len(t, v.Reasons, 3, "%v", v.Reasons)

	// B's replayer lagged: the same figures are the harness's.
	b.Harness = &Harness{Saturated: true, Why: []string{"the replayer got to 12.0% of the requests more than 100ms late"}}
	v = judge(a, b, nil, DefaultThresholds())
	assert.False(t, v.Regression, "%v", v.Reasons)
	assert.True(t, v.Saturated)
	c := classes(v)
	assert.Equal(t, NotValid, c["latency p99"])
	assert.Equal(t, NotValid, c["longest probe silence"])
	assert.Equal(t, Same, c["failed requests"], "timeouts are left out; the rest is judged")
	assert.Equal(t, []string{"latency", "timeouts", "WebSocket connects", "frames delivered in order and in time", "route API latency", "probe silences"}, v.LeftOut)

	// A fault the harness cannot cause still counts.
	b.Failed += 60
	b.Errors[replay.ErrProxy5xx] = 60
	b.ErrorRate = float64(b.Failed) / 1000
	v = judge(a, b, nil, DefaultThresholds())
	assert.True(t, v.Regression)
	assert.Equal(t, Worse, classes(v)["failed requests"])

	// Short of processor time, the harness fails WebSocket handshakes
	// itself (sent late, timed out): on a saturated run of 4.6.2 against
	// itself, A's 21% of failed connects against B's 6% made B "better".
	a2, b2 := figs(20, 2, 0), figs(20, 2, 0)
	a2.Sessions, b2.Sessions = 634, 634
	a2.ConnectRate, b2.ConnectRate = 0.79, 0.94
	a2.Harness = &Harness{Saturated: true, Why: []string{"the machine's processors were 95% busy or more for 78 of 78 seconds"}}
	v2 := judge(a2, b2, nil, DefaultThresholds())
	assert.Equal(t, NotValid, classes(v2)["WebSocket connects failed"])
	assert.Empty(t, v2.Better, "a saturated harness credits B with nothing it measured itself")
	a2.Harness = nil
	assert.Equal(t, Better, classes(judge(a2, b2, nil, DefaultThresholds()))["WebSocket connects failed"], "unsaturated, the same figures are judged")

	r := &Report{Runs: []*Figures{a, b}, Speed: 50, Verdict: v}
	assert.Regexp(t, `^SATURATED: the harness, not the candidate, was the bottleneck \(B \(chp@B\): the replayer .*\); left out of the verdict: latency, timeouts, WebSocket connects, frames delivered in order and in time, route API latency, probe silences.*; replay at a lower --speed than 50x, .* REGRESSION`, r.Headline())
}

// A baseline whose own answers held its requests back set its own pace,
// so B was offered a load no run of A's was: the verdict is saturated and
// leaves out what load moves. B doing so alone is B's doing: judged.
func TestBaselineThatSetThePaceSaturates(t *testing.T) {
	held := func(f *Figures, share float64) {
		f.Harness = &Harness{Held: int(share * 1000), HeldShare: share, HeldMean: 3 * time.Second}
	}
	mk := func(aHeld, noiseHeld, bHeld float64) (a, b *Figures, noise []*Figures) {
		a, b, n := figs(20, 2, 0), figs(60, 2, 0), figs(22, 2, 0)
		a.Role, a.Spec, b.Role, b.Spec, n.Role, n.Spec = RoleA, "chp@A", RoleB, "chp@B", RoleNoise, "chp@A"
		a.Speed, b.Speed, n.Speed = 50, 50, 50
		held(a, aHeld)
		held(n, noiseHeld)
		held(b, bHeld)
		return a, b, []*Figures{n}
	}

	// Neither A run held back: B's latency is its own.
	a, b, noise := mk(0.09, 0.05, 0.4)
	v := judge(a, b, noise, DefaultThresholds())
	assert.False(t, v.Saturated, "%v", v.Why)
	assert.True(t, v.Regression)
	assert.Equal(t, Worse, classes(v)["latency p99"])

	// A held back, or A again: saturated, latency not judged.
	for _, h := range [][2]float64{{0.4, 0}, {0, 0.12}} {
		a, b, noise = mk(h[0], h[1], 0.4)
		b.Proxy.CPUBusy = 12
		v = judge(a, b, noise, DefaultThresholds())
		assert.True(t, v.Saturated, "%v", h)
		assert.True(t, v.Paced)
		assert.False(t, v.Regression, "%v", v.Reasons)
		assert.Equal(t, NotValid, classes(v)["latency p99"])
		r := &Report{Runs: append([]*Figures{a, b}, noise...), Speed: 50, Verdict: v}
		hl := r.Headline()
		assert.Regexp(t, `^SATURATED: A, the baseline, could not keep the trace's pace: its own answers, not the trace, set the load \(A'? \(chp@A\): \d+\.\d% of the requests waited more than 100ms for the candidate's own earlier answers on their connection \(3s on average\): at 50x .*\); left out of the verdict: latency, timeouts, .*; replay at a lower --speed than 50x`, hl)
		assert.Contains(t, hl, "caution: the candidate was at a full core in B (12 of 30 samples)")
	}

	// With the harness saturated too, both are said.
	a, b, noise = mk(0.4, 0, 0)
	b.Harness.Saturated, b.Harness.Why = true, []string{"the replayer got to 3.0% of the requests more than 100ms late"}
	v = judge(a, b, noise, DefaultThresholds())
	r := &Report{Runs: append([]*Figures{a, b}, noise...), Speed: 50, Verdict: v}
	assert.Regexp(t, `^SATURATED: the harness was the bottleneck, and A, the baseline, could not keep the trace's pace \(A \(chp@A\): .*; B \(chp@B\): the replayer got to 3.0%`, r.Headline())

	// A against A, keeping the pace: quiet.
	a, _, noise = mk(0, 0, 0)
	a2 := figs(20, 2, 0)
	a2.Role, a2.Spec = RoleB, "chp@A"
	v = judge(a, a2, noise, DefaultThresholds())
	assert.False(t, v.Saturated)
	assert.False(t, v.Regression)
}

// The saturation rule itself: how late the replayer got, how busy the machine was.
func TestHarnessSaturationRule(t *testing.T) {
	mk := func(lags []time.Duration, busy []float64) *Harness {
		r := &run{res: &replay.Results{}}
		for _, l := range lags {
			r.res.Requests = append(r.res.Requests, &replay.Request{Lag: l})
		}
		for i, x := range busy {
			r.harnessSamples = append(r.harnessSamples, &HarnessSample{TS: time.Duration(i) * time.Second, Shares: cpustat.Shares{Busy: x, Cores: 2}})
		}
		return r.harness(&Figures{Speed: 10})
	}
	quiet := make([]time.Duration, 1000)
	idle := []float64{0.3, 0.4, 0.5, 0.4, 0.3, 0.6, 0.5, 0.4, 0.3, 0.2}
	h := mk(quiet, idle)
	assert.False(t, h.Saturated, "%v", h.Why)
	assert.Zero(t, h.Late)

	late := append([]time.Duration{}, quiet...)
	for i := range 30 {
		late[i] = 300 * time.Millisecond
	}
	h = mk(late, idle)
	assert.True(t, h.Saturated)
	assert.Equal(t, 30, h.Late)
	assert.Contains(t, h.Why[0], "3.0% of the requests more than 100ms late")

	// Requests held back by the candidate's own answers are its pace, not
	// the harness's lateness: counted, never saturating the run.
	r := &run{res: &replay.Results{}}
	for i := range 1000 {
		q := &replay.Request{Held: time.Millisecond}
		if i < 150 {
			q.Held = 2 * time.Second
		}
		r.res.Requests = append(r.res.Requests, q)
	}
	h = r.harness(&Figures{Speed: 10})
	assert.False(t, h.Saturated, "%v", h.Why)
	assert.Equal(t, 150, h.Held)
	assert.InDelta(t, 0.15, h.HeldShare, 1e-9)
	assert.Equal(t, 300850*time.Microsecond, h.HeldMean)
	assert.True(t, h.Paced())
	r.res.Requests = r.res.Requests[50:] // 100 of 950 held: a tenth or more
	assert.True(t, r.harness(&Figures{Speed: 10}).Paced())
	r.res.Requests = r.res.Requests[10:] // 90 of 940: less
	assert.False(t, r.harness(&Figures{Speed: 10}).Paced())

	busy := append([]float64{}, idle...)
	busy[2], busy[3], busy[4] = 0.99, 0.97, 1
	h = mk(quiet, busy)
	assert.True(t, h.Saturated)
	assert.Contains(t, h.Why[0], "3 of 10 seconds")

	// One or two full seconds are too few to count by themselves, unless
	// they fall where the traffic is: the typical p99 is the median of
	// the stretches', and a tenth of them on a full machine can move it.
	oneBusy := append([]float64{}, idle...)
	oneBusy[6] = 0.98 // the second (5 s, 6 s]
	withStretches := func(busy []float64, stretches ...[2]time.Duration) *Harness {
		r := &run{res: &replay.Results{}, stretches: stretches}
		for i, x := range busy {
			r.harnessSamples = append(r.harnessSamples, &HarnessSample{TS: time.Duration(i) * time.Second, Shares: cpustat.Shares{Busy: x, Cores: 2}})
		}
		return r.harness(&Figures{Speed: 10})
	}
	every := func(from, to, step time.Duration) (out [][2]time.Duration) {
		for t := from; t < to; t += step {
			out = append(out, [2]time.Duration{t, t + step})
		}
		return out
	}
	spread := every(0, 10*time.Second, 100*time.Millisecond) // 100 stretches, 10 in the full second
	h = withStretches(oneBusy, spread...)
	assert.True(t, h.Saturated)
	assert.Equal(t, [2]int{10, 100}, [2]int{h.BusyStretches, h.Stretches})
	assert.Contains(t, h.Why[0], "10 of the 100 stretches the typical latency is taken from overlapped seconds in which the machine's processors were 95% busy or more (1 of 10 seconds)")
	h = withStretches(idle, spread...)
	assert.False(t, h.Saturated, "the same stretches on a machine with room: %v", h.Why)
	// The traffic elsewhere: the full second holds 5 of 100 stretches.
	elsewhere := append(every(0, 5*time.Second, 50*time.Millisecond), every(5*time.Second, 10*time.Second, time.Second)...)
	h = withStretches(oneBusy, elsewhere...)
	assert.False(t, h.Saturated, "%d of %d stretches: %v", h.BusyStretches, h.Stretches, h.Why)
	assert.Equal(t, 1, h.BusyStretches)

	// The candidate's waiting for a processor is shown, not judged.
	r = &run{res: &replay.Results{}}
	for i := range 10 {
		r.samples = append(r.samples, &Sample{TS: time.Duration(i) * time.Second, Sample: proxy.Sample{Up: true, PID: 7, CPU: time.Duration(i) * 300 * time.Millisecond, Wait: time.Duration(i*i) * 10 * time.Millisecond}})
	}
	h = r.harness(&Figures{Speed: 10})
	assert.InDelta(t, 0.09, h.WaitMean, 0.001, "810 ms of 9 s")
	assert.InDelta(t, 0.17, h.WaitPeak, 0.001, "170 ms in the last second")
	assert.False(t, h.Saturated)
	h = (&run{res: &replay.Results{}}).harness(&Figures{Speed: 10})
	assert.Equal(t, -1.0, h.WaitMean, "no samples of the candidate: not measured")

	// Processors taken by the hypervisor (steal) leave the candidate less
	// machine than it was given.
	withSteal := func(steal float64) *Harness {
		r := &run{res: &replay.Results{}}
		for i := range 10 {
			r.harnessSamples = append(r.harnessSamples, &HarnessSample{TS: time.Duration(i) * time.Second, Shares: cpustat.Shares{Busy: 0.5, Steal: steal, Cores: 2}})
		}
		return r.harness(&Figures{Speed: 10})
	}
	h = withSteal(0.02)
	assert.False(t, h.Saturated, "%v", h.Why)
	h = withSteal(0.09)
	assert.True(t, h.Saturated)
	assert.Contains(t, h.Why[0], "the hypervisor took 9% of the machine's processors on average (steal time)")

	// The fixtures' own lateness: a few late wake-ups are noise, more than
	// one in a hundred a starved harness.
	withFixtures := func(due, late int) *Harness {
		r := &run{res: &replay.Results{}}
		for i := range 10 {
			s := &HarnessSample{TS: time.Duration(i) * time.Second, Shares: cpustat.Shares{Busy: 0.4, Cores: 2}}
			s.Fixtures = fixtures.LateCount{Due: due / 10, Late: late / 10, Max: 150 * time.Millisecond}
			r.harnessSamples = append(r.harnessSamples, s)
		}
		return r.harness(&Figures{Speed: 10})
	}
	h = withFixtures(10000, 50)
	assert.False(t, h.Saturated, "%v", h.Why)
	assert.Equal(t, 50, h.Fixtures.Late)
	h = withFixtures(10000, 300)
	assert.True(t, h.Saturated)
	assert.Contains(t, h.Why[0], "the fixtures woke more than 100ms late for 3.0% of their answers and frames (at worst 150ms)")

	// At max speed there is no schedule: the harness runs flat out.
	r = &run{res: &replay.Results{Requests: []*replay.Request{{}}}}
	h = r.harness(&Figures{Speed: 0})
	assert.True(t, h.Saturated)
	assert.Contains(t, h.Why[0], "at max speed")
}

// A silence is a restart only as z2jh's kubelet counts one: 30 probes in a
// row, 10 s apart (or what the values say); shorter ones are a figure.
func TestLivenessAsTheKubeletJudgesIt(t *testing.T) {
	a, b := figs(20, 2, 0), figs(20, 2, 0)
	b.Proxy.Silences = []Silence{{From: time.Minute, Len: 12 * time.Second}}
	v := judge(a, b, nil, DefaultThresholds())
	c := classes(v)
	assert.Equal(t, Same, c["liveness restarts"], "12 s is no restart")
	assert.Equal(t, Worse, c["longest probe silence"])
	assert.NotContains(t, v.Reasons[0], "hung")
	assert.Contains(t, v.Reasons[0], "short of z2jh's restart (every 10s, 3s timeout, 30 failures in a row)")

	// Silences within one probe period of A's are the same: a candidate on
	// a full core strays that far from run to run. These are 4.6.2 against
	// itself at 40x on the 300-student peak (A, B, A').
	aa := func(a, b, a2 float64) Class {
		fs := []*Figures{figs(20, 2, 0), figs(20, 2, 0), figs(20, 2, 0)}
		for i, s := range []float64{a, b, a2} {
			fs[i].Proxy.Silences = []Silence{{From: time.Minute, Len: time.Duration(s * float64(time.Second))}}
		}
		return classes(judge(fs[0], fs[1], fs[2:], DefaultThresholds()))["longest probe silence"]
	}
	assert.Equal(t, Same, aa(19, 9, 16))
	assert.Equal(t, Same, aa(9, 19, 16), "the mirror")
	assert.Equal(t, Same, aa(28, 6, 45))
	assert.Equal(t, Same, aa(6, 28, 45), "the mirror")
	assert.Equal(t, Worse, aa(2, 25, 3), "a stall of 25 s where A's runs had 2 and 3")

	b.Proxy.Silences = []Silence{{From: time.Minute, Len: 301 * time.Second}}
	v = judge(a, b, nil, DefaultThresholds())
	assert.Equal(t, Worse, classes(v)["liveness restarts"])
	assert.Contains(t, v.Reasons[0], "it hung, and z2jh's kubelet (every 10s, 3s timeout, 30 failures in a row) would have restarted it once")

	// A values file with a stricter probe restarts sooner.
	th := DefaultThresholds()
	th.Liveness = Liveness{Period: 2 * time.Second, Timeout: time.Second, Failures: 3}
	b.Proxy.Silences = []Silence{{From: time.Minute, Len: 12 * time.Second}}
	assert.Equal(t, Worse, classes(judge(a, b, nil, th))["liveness restarts"])
	b.Proxy.Silences = []Silence{{From: time.Minute, Len: 5 * time.Second}}
	assert.Equal(t, Worse, classes(judge(a, b, nil, th))["longest probe silence"], "more than one period of 2 s")

	// Without probes sampled by hubreplay (a cluster's kubelet probes), the
	// checks do not apply: its restarts are counted as restarts.
	a.Proxy.Probed, b.Proxy.Probed = false, false
	v = judge(a, b, nil, DefaultThresholds())
	assert.Equal(t, NotApplicable, classes(v)["liveness restarts"])
	assert.False(t, v.Unanswered)
}

func TestSilencesFromSamples(t *testing.T) {
	var up []*Sample
	for i := range 20 {
		s := &Sample{TS: time.Duration(i) * time.Second}
		s.Up = true
		s.Unanswered = i >= 5 && i < 9
		if !s.Unanswered {
			s.Probe = time.Millisecond
		}
		up = append(up, s)
	}
	got := silences(up, 10)
	require.Len(t, got, 1)
	assert.Equal(t, 20*time.Second, got[0].From, "trace time at 10×: from the first unanswered probe's start (5 s − the 3 s timeout)")
	assert.Equal(t, 7*time.Second, got[0].Len, "wall time until the next answer")
}

// The typical p99 stays put when one stretch of the run had a pause, and
// moves when the proxy is slower throughout.
func TestTypicalP99(t *testing.T) {
	mk := func(latency func(i int) time.Duration) *Figures {
		r := &run{res: &replay.Results{}}
		for i := range 6000 { // 100 a second for a minute of trace time
			r.res.Requests = append(r.res.Requests, &replay.Request{Sent: time.Duration(i)*10*time.Millisecond + time.Millisecond, TTLB: latency(i)})
		}
		f := &Figures{Speed: 1, Length: time.Minute, Latency: replay.Percentiles{Count: 6000, P99: 999_000}}
		r.series(f)
		return f
	}
	steady := mk(func(i int) time.Duration { return time.Duration(5+i%7) * time.Millisecond })
	paused := mk(func(i int) time.Duration {
		if i >= 3000 && i < 3060 { // a 600 ms stretch of 400 ms answers
			return 400 * time.Millisecond
		}
		return time.Duration(5+i%7) * time.Millisecond
	})
	slower := mk(func(i int) time.Duration { return time.Duration(65+i%7) * time.Millisecond })
	assert.InDelta(t, 11, steady.TypicalP99, 0.5)
	assert.Equal(t, steady.TypicalP99, paused.TypicalP99, "one pause does not move it")
	assert.InDelta(t, 71, slower.TypicalP99, 0.5, "slower throughout does")
}

// Trace time before the replay began (a silence during start-up) reads as
// such, not as "0:-3".
func TestClock(t *testing.T) {
	assert.Equal(t, "1:05", clock(65*time.Second))
	assert.Equal(t, "1:00:00", clock(time.Hour))
	assert.Equal(t, "-0:03", clock(-3*time.Second))
}

// A candidate busy on its one core for a tenth of the run set the pace
// itself; one with headroom did not.
func TestCandidateOverload(t *testing.T) {
	mk := func(busy int) *Resources {
		r := &run{res: &replay.Results{}}
		at, cpu := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), time.Duration(0)
		for i := range 20 {
			s := &Sample{TS: time.Duration(i) * time.Second}
			s.Up, s.PID, s.At, s.CPU = true, 7, at.Add(time.Duration(i)*time.Second), cpu
			r.samples = append(r.samples, s)
			if i < busy {
				cpu += 950 * time.Millisecond
			} else {
				cpu += 200 * time.Millisecond
			}
		}
		return r.resources(&Figures{Speed: 1})
	}
	idle := mk(0)
	assert.InDelta(t, 0.2, idle.CPUPeak, 0.01)
	assert.Zero(t, idle.CPUBusy)
	assert.False(t, idle.Overloaded())
	busy := mk(5)
	assert.InDelta(t, 0.95, busy.CPUPeak, 0.01)
	assert.Equal(t, 5, busy.CPUBusy)
	assert.True(t, busy.Overloaded())
	assert.False(t, mk(2).Overloaded(), "two busy seconds are a moment, not the run")
}

// The design document lists the verdict's checks; a check added to the
// table must be listed there too.
func TestEveryCheckIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/ARCHITECTURE.md")
	require.NoError(t, err)
	for _, name := range CheckNames() {
		assert.Regexp(t, `(?m)^\s*\| `+regexp.QuoteMeta(name)+` \|`, string(doc), "docs/ARCHITECTURE.md's table of checks lacks %q", name)
	}
}

// A p99 over fewer than MinP99Requests answers is one of the slowest few:
// shown as not applicable, never a regression; from there on it is judged.
func TestFewRequestsHaveNoP99(t *testing.T) {
	a, b := figs(60, 0, 0), figs(155, 0, 0)
	a.Latency.Count, b.Latency.Count = 60, 60
	v := judge(a, b, nil, DefaultThresholds())
	assert.False(t, v.Regression, "%v", v.Reasons)
	c := v.Checks[0]
	assert.Equal(t, "latency p99", c.Name)
	assert.Equal(t, NotApplicable, c.Class)
	assert.Contains(t, c.Why, "fewer than 100 answered requests in a run")
	a.Latency.Count, b.Latency.Count = MinP99Requests, MinP99Requests
	assert.Equal(t, Worse, classes(judge(a, b, nil, DefaultThresholds()))["latency p99"])
}
