package replay_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/fixtures/lecturepeak"
	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

// stage is a staging setup on loopback: a real CHP from npm, the fixtures
// behind it, the hub stub driving its routes, and a replay runner whose
// results go to a real results file.
type stage struct {
	path    string
	ix      *fixtures.Index
	resp    *fixtures.Responder
	chp     *proxy.Candidate
	stub    *fixtures.HubStub
	plan    *replay.Plan
	run     *replay.Runner
	results string
}

func newStage(t *testing.T, version, tracePath string, o replay.Options, check time.Duration, restart time.Duration) *stage {
	t.Helper()
	testenv.Need(t, "node")
	speed := o.Speed
	ix, resp, srv := fixturesFor(t, tracePath, speed)
	spec, err := proxy.ParseSpec("chp@" + version)
	require.NoError(t, err)
	prog, err := proxy.Obtain(context.Background(), spec, &proxy.Cache{Dir: testenv.CacheDir(t)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := proxy.Start(ctx, prog, proxy.Options{DefaultTarget: srv.Hub(), RestartDelay: restart, LogLevel: "warn"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(); cancel() })
	p := plan(t, tracePath, o)
	stub := &fixtures.HubStub{API: c.APIURL(), Token: c.Token(), Routes: p.Routes, Target: srv.Target, Speed: speed, CheckInterval: check}
	out := filepath.Join(t.TempDir(), "run.results")
	w, err := replay.CreateResults(out, "test", false)
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	run := &replay.Runner{Target: c.URL(), Routes: stub, Results: w, TraceName: tracePath, Timeout: 10 * time.Second}
	return &stage{path: tracePath, ix: ix, resp: resp, chp: c, stub: stub, plan: p, run: run, results: out}
}

// finish closes the results file and reads it back.
func (s *stage) finish(t *testing.T) *replay.Results {
	t.Helper()
	require.NoError(t, s.run.Results.(*trace.Writer).Close())
	res, err := replay.ReadResults(context.Background(), s.results)
	require.NoError(t, err)
	return res
}

// peakTrace writes a generated lecture peak.
func peakTrace(t *testing.T, users int, d time.Duration, seed uint64) string {
	t.Helper()
	h, recs := lecturepeak.Generate(lecturepeak.Options{Users: users, Duration: d, Seed: seed})
	return writeTrace(t, h, recs)
}

// checkAsRecorded checks that every request and frame of the trace went
// through the proxy and was answered as recorded.
func checkAsRecorded(t *testing.T, s *stage, res *replay.Results, sum *replay.Summary) {
	t.Helper()
	exchanges, sessions, clientFrames, serverFrames := 0, 0, 0, 0
	for _, ex := range s.ix.Exchanges {
		exchanges++
		if ex.Upgrade && ex.Resp != nil && ex.Resp.Status == 101 {
			sessions++
		}
	}
	for _, ses := range s.ix.Sessions {
		clientFrames += ses.ClientFrames
		serverFrames += len(ses.Server)
	}
	require.Greater(t, exchanges, 1000, "a trace worth replaying")
	require.Len(t, res.Requests, exchanges, "a result for every recorded request")
	require.Len(t, res.Sessions, sessions, "a result for every recorded WebSocket session")
	seen := map[int64]bool{}
	for _, q := range res.Requests {
		ex := s.ix.Exchanges[q.Record]
		require.NotNil(t, ex, "record %d is an exchange", q.Record)
		assert.False(t, seen[q.Record], "record %d replayed once", q.Record)
		seen[q.Record] = true
		if ex.Resp == nil {
			continue
		}
		if !assert.Empty(t, q.Error, "record %d %s %s: %s", q.Record, q.Method, q.Target, q.Detail) {
			continue
		}
		if ex.ProxyAnswered() {
			// A dead server: the proxy answers with the hub's error page,
			// not the recording's (and CHP 4.x closes a WebSocket unanswered).
			if !ex.Upgrade {
				assert.Equal(t, ex.Resp.Status, q.Status, "record %d: the proxy's own 503", q.Record)
			}
			continue
		}
		assert.Equal(t, ex.Resp.Status, q.Status, "record %d: the recorded status", q.Record)
		if !ex.Resp.Incomplete && q.Method != "HEAD" {
			assert.Equal(t, ex.Resp.BodySize, q.Bytes, "record %d: the recorded size", q.Record)
		}
	}
	sent, received, matched := 0, 0, 0
	for _, ses := range res.Sessions {
		assert.True(t, ses.Connected, "session %d", ses.Record)
		assert.Empty(t, ses.Error, "session %d: %s", ses.Record, ses.Detail)
		assert.Equal(t, ses.WantClose, ses.Close, "session %d ended as recorded", ses.Record)
		sent += ses.Sent
		received += ses.Received
		matched += ses.Matched
	}
	assert.Equal(t, clientFrames, sent, "every recorded client frame was sent")
	assert.Equal(t, serverFrames, received, "every recorded server frame arrived")
	assert.Equal(t, serverFrames, matched, "in order, with the recorded opcode and length")
	assert.Zero(t, sum.Failed, "%v", sum.Errors)
	unreachable := 0
	for num := range s.ix.Exchanges {
		if s.ix.Unreachable(num) {
			unreachable++
		}
	}
	assert.EqualValues(t, exchanges-sessions-unreachable, s.resp.Served.Load(), "the fixtures answered every exchange")
	assert.EqualValues(t, unreachable, s.resp.Refused.Load(), "but those whose server was not there (a server dead under an open tab)")
	assert.EqualValues(t, sessions, s.resp.Sessions.Load())
	assert.Zero(t, s.resp.Misrouted.Load(), "no request found its route missing")
}

// A 10-minute lecture peak through CHP 4.5.6 (the release the incidents
// ran) at 10×: all of it arrives and is answered as recorded, in about a
// minute, and the results say how late the replayer itself was.
func TestReplayThroughCHP456AtTenTimes(t *testing.T) {
	t.Parallel()
	path := peakTrace(t, 12, 10*time.Minute, 3)
	s := newStage(t, "4.5.6", path, replay.Options{Speed: 10}, fixtures.DefaultCheckInterval, time.Second)
	sum, err := s.run.Run(context.Background(), s.plan)
	require.NoError(t, err)
	res := s.finish(t)
	checkAsRecorded(t, s, res, sum)

	// Speed: the trace's 10 minutes take a tenth as long; nothing may go
	// early. How much longer it took is a figure (a loaded machine, the
	// last connections' recorded closes), not an assertion.
	t.Logf("trace %s at 10× took %s", s.plan.Length, sum.Wall)
	assert.GreaterOrEqual(t, sum.Wall, s.plan.Length/10)
	for _, q := range res.Requests {
		require.GreaterOrEqual(t, q.Sent, q.TS+q.Held, "record %d went out before its time", q.Record)
	}
	// The send-time error percentiles are in the results file's end record.
	require.Len(t, res.Ends, 1)
	se := res.Ends[0].Tally.Percentiles[replay.HistSendError]
	assert.EqualValues(t, len(res.Requests), se.Count)
	assert.Positive(t, se.P99)
	assert.LessOrEqual(t, se.P50, se.P99)
	t.Logf("send-time error: %s", se)
	// CHP 4.x closes a connection after each answer (http-proxy sends
	// Connection: close), so keep-alive connections had to reconnect.
	assert.Positive(t, sum.Reconns)
}

// CHP 5.3.0 (http-proxy-3) at 30×: the same, on a shorter peak.
func TestReplayThroughCHP530(t *testing.T) {
	t.Parallel()
	path := peakTrace(t, 20, 5*time.Minute, 4)
	// Route adds go out 2 s ahead rather than 250 ms: the hub waits for
	// an add before it sends the user, and beside other work (make test
	// with a busy core) CHP's routes API took longer than the default
	// lead plus the recorded 200 ms ÷ 30 to confirm one.
	s := newStage(t, "5.3.0", path, replay.Options{Speed: 30, RouteLead: 2 * time.Second}, fixtures.DefaultCheckInterval, time.Second)
	sum, err := s.run.Run(context.Background(), s.plan)
	require.NoError(t, err)
	checkAsRecorded(t, s, s.finish(t), sum)
}

// CHP is SIGKILLed mid-replay (as the OOM killer did) and comes back
// empty after a restart delay. The results show it: connections refused
// while it is down, the hub's 503s for users whose routes it lost, until
// the hub stub's check puts them back; after that, answers as recorded.
// The replay itself goes on to the end.
func TestKilledCHPShowsInResultsAndRecovers(t *testing.T) {
	t.Parallel()
	path := peakTrace(t, 30, 8*time.Minute, 5)
	const speed = 10
	check := 20 * time.Second // trace time: 2 s at 10×
	restart := 3 * time.Second
	s := newStage(t, "5.3.0", path, replay.Options{Speed: speed, Window: trace.Window{From: 2 * time.Minute, To: 5 * time.Minute}}, check, restart)

	var killedAt time.Duration
	go func() {
		for s.run.Progress().Elapsed < 4*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		killedAt = s.run.Progress().Elapsed
		s.chp.Kill()
	}()
	sum, err := s.run.Run(context.Background(), s.plan)
	require.NoError(t, err)
	res := s.finish(t)
	require.NotZero(t, killedAt)
	require.Len(t, res.Requests, s.plan.Requests, "the replay went on to the end")

	exits := s.chp.Exits()
	require.NotEmpty(t, exits)
	assert.Equal(t, "killed", exits[0].Signal)
	assert.Equal(t, 2, s.chp.Starts(), "restarted once")

	// After the restart and one check interval (plus readiness and a
	// margin), the proxy has its routes back: everything as recorded.
	recovered := killedAt + restart + check/speed + 3*time.Second
	var down, missing, after, afterOK int
	for _, q := range res.Requests {
		switch {
		case q.Sent >= killedAt && q.Sent < killedAt+restart && (q.Error == replay.ErrConnectRefused):
			down++
		case q.Error == replay.ErrRouteMissing:
			missing++
			assert.Greater(t, q.Sent, killedAt, "routes go missing only after the kill")
			assert.Equal(t, 503, q.Status)
		case q.Sent > recovered:
			after++
			if q.Error == "" {
				afterOK++
			}
		}
	}
	t.Logf("killed at %s: %d refused while down, %d route-missing 503s, %d of %d answered as recorded after %s; %v",
		killedAt, down, missing, afterOK, after, recovered, sum.Errors)
	assert.Positive(t, down, "connections refused while CHP was down")
	assert.Positive(t, missing, "503s from the hub while the restarted CHP lacked routes")
	require.Positive(t, after)
	assert.Equal(t, after, afterOK, "after recovery, everything as recorded")
	var checkAdds int
	for _, c := range s.stub.Calls() {
		if c.Why == "check" && c.Method == "POST" && c.Status == 201 {
			checkAdds++
		}
	}
	assert.Positive(t, checkAdds, "the hub stub's check put routes back")
	var broken int
	for _, ses := range res.Sessions {
		if ses.Connected && (ses.Error == replay.ErrReset || ses.Error == replay.ErrClosed) {
			broken++
		}
	}
	assert.Positive(t, broken, "WebSocket sessions open at the kill broke")
}
