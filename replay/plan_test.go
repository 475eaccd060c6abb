package replay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/fixtures/lecturepeak"
	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

func TestParseSpeedAndShard(t *testing.T) {
	for in, want := range map[string]float64{"1": 1, "4": 4, "0.1": 0.1, "100": 100, "10x": 10, "max": 0, "MAX": 0} {
		got, err := replay.ParseSpeed(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"0", "0.05", "101", "fast", "-1", ""} {
		_, err := replay.ParseSpeed(bad)
		assert.Error(t, err, bad)
	}
	s, err := replay.ParseShard("2/4")
	require.NoError(t, err)
	assert.Equal(t, replay.Shard{Index: 2, Count: 4}, s)
	for _, bad := range []string{"4/4", "-1/4", "1", "a/b", "0/0"} {
		_, err := replay.ParseShard(bad)
		assert.Error(t, err, bad)
	}
}

func peakFile(t *testing.T) string {
	t.Helper()
	h, recs := lecturepeak.Generate(lecturepeak.Options{Users: 30, Duration: 6 * time.Minute, Seed: 9})
	return writeTrace(t, h, recs)
}

// --users 3: every connection three times, the copies under fresh
// pseudonyms (in paths, headers and routes), each user's copy shifted by
// the same seeded jitter; the same seed gives the same plan.
func TestUsersMultiplied(t *testing.T) {
	path := peakFile(t)
	one := plan(t, path, replay.Options{Speed: 1})
	three := plan(t, path, replay.Options{Speed: 1, Users: 3, Jitter: time.Minute, Seed: 5})
	assert.Equal(t, 3*len(one.Conns), len(three.Conns))
	assert.Equal(t, 3*one.Requests, three.Requests)
	assert.Equal(t, 3*one.Sessions, three.Sessions)
	assert.Equal(t, 3*one.ClientFrames, three.ClientFrames)
	assert.Equal(t, 3*len(one.Routes), len(three.Routes))

	ids := map[uint64]bool{}
	users := map[int]map[string]bool{0: {}, 1: {}, 2: {}}
	shifts := map[string]time.Duration{} // user copy → its shift
	for _, c := range three.Conns {
		require.False(t, ids[c.ID], "connection ids are unique")
		ids[c.ID] = true
		if c.User == "" {
			continue
		}
		users[c.Clone][c.User] = true
		if prev, ok := shifts[c.User]; ok {
			assert.Equal(t, prev, c.Shift, "all of a user's connections move together")
		}
		shifts[c.User] = c.Shift
		assert.GreaterOrEqual(t, c.Shift, time.Duration(0))
		assert.Less(t, c.Shift, time.Minute)
		if c.Clone == 0 {
			assert.Zero(t, c.Shift, "the recorded users keep their times")
			continue
		}
		for _, s := range c.Steps {
			if u := trace.UserOf(s.Target); u != "" {
				assert.Equal(t, c.User, u, "a copy's requests go to its own server")
			}
			for _, f := range s.Headers {
				assert.NotContains(t, f[1], "/user/"+trace.UserOf(s.HTTP.Req.Target)+"/", "headers moved to the copy's space")
			}
		}
	}
	assert.Len(t, users[1], len(users[0]))
	assert.Len(t, users[2], len(users[0]))
	for u := range users[1] {
		assert.False(t, users[0][u], "copies are fresh pseudonyms")
		assert.True(t, strings.HasPrefix(u, "u-") && len(u) == 10, "of the trace's form: %s", u)
	}
	routed := map[string]bool{}
	for _, r := range three.Routes {
		if r.Op == trace.RouteAdd {
			routed[r.User] = true
			assert.Equal(t, "/user/"+r.User+"/", r.Path)
			assert.Contains(t, string(r.Data), `"`+r.User+`"`)
		}
	}
	for c := range 3 {
		for u := range users[c] {
			assert.True(t, routed[u], "copy %s has its route", u)
		}
	}

	again := plan(t, path, replay.Options{Speed: 1, Users: 3, Jitter: time.Minute, Seed: 5})
	require.Equal(t, len(three.Conns), len(again.Conns))
	for i := range three.Conns {
		assert.Equal(t, three.Conns[i].User, again.Conns[i].User)
		assert.Equal(t, three.Conns[i].Open, again.Conns[i].Open)
	}
	other := plan(t, path, replay.Options{Speed: 1, Users: 3, Jitter: time.Minute, Seed: 6})
	differ := false
	for i := range three.Conns {
		differ = differ || three.Conns[i].User != other.Conns[i].User
	}
	assert.True(t, differ, "another seed, other copies")
}

// --from/--to: only requests inside the window, times from its start, the
// routes live at its start added at 0, sessions opened before it counted.
func TestWindow(t *testing.T) {
	path := peakFile(t)
	whole := plan(t, path, replay.Options{Speed: 1})
	from, to := 3*time.Minute, 4*time.Minute
	win := plan(t, path, replay.Options{Speed: 1, Window: trace.Window{From: from, To: to}})
	assert.Equal(t, to-from, win.Length)
	assert.Positive(t, win.Skipped, "WebSockets opened before the window are left out, and counted")
	n := 0
	for _, c := range whole.Conns {
		for _, s := range c.Steps {
			if s.HTTP.TS >= from && s.HTTP.TS < to {
				n++
			}
		}
	}
	assert.Equal(t, n, win.Requests)
	for _, c := range win.Conns {
		assert.GreaterOrEqual(t, c.Open, time.Duration(0))
		for _, s := range c.Steps {
			assert.Equal(t, s.HTTP.TS-from, s.At)
			assert.Less(t, s.At, to-from)
		}
		assert.LessOrEqual(t, c.CloseAt, to-from)
	}
	var atZero int
	for _, r := range win.Routes {
		if r.TS == 0 && r.Op == trace.RouteAdd {
			atZero++
		}
	}
	assert.Positive(t, atZero, "the routing table the window starts with")
}

// --shard i/N: the shards split the connections between them, each once,
// a user's connections in one shard, the same way every time.
func TestShardsPartition(t *testing.T) {
	path := peakFile(t)
	whole := plan(t, path, replay.Options{Speed: 1, Users: 2, Jitter: time.Minute})
	seen := map[uint64]int{}
	userShard := map[string]int{}
	total := 0
	for i := range 3 {
		p := plan(t, path, replay.Options{Speed: 1, Users: 2, Jitter: time.Minute, Shard: replay.Shard{Index: i, Count: 3}})
		assert.Positive(t, p.Requests, "shard %d has work", i)
		assert.Less(t, p.Requests, whole.Requests)
		total += p.Requests
		for _, c := range p.Conns {
			seen[c.ID]++
			if c.User != "" {
				if prev, ok := userShard[c.User]; ok {
					assert.Equal(t, prev, i, "user %s in one shard", c.User)
				}
				userShard[c.User] = i
			}
		}
		assert.Equal(t, len(whole.Routes), len(p.Routes), "every shard knows every route; one of them drives them")
	}
	assert.Equal(t, whole.Requests, total)
	assert.Len(t, seen, len(whole.Conns))
	for id, n := range seen {
		assert.Equal(t, 1, n, "connection %d in exactly one shard", id)
	}
}

// At max speed the routing table is filled first and kept: time means
// nothing there.
func TestMaxSpeedRoutes(t *testing.T) {
	p := plan(t, peakFile(t), replay.Options{Speed: 0})
	require.NotEmpty(t, p.Routes)
	max := map[string]bool{}
	for _, r := range p.Routes {
		assert.Zero(t, r.TS)
		assert.Equal(t, trace.RouteAdd, r.Op)
		max[r.Path] = true
	}
	// Every route the trace ever adds, those it deletes later too: their
	// users' requests come at any moment.
	all, deleted := map[string]bool{}, 0
	for _, r := range plan(t, peakFile(t), replay.Options{Speed: 1}).Routes {
		if r.Op == trace.RouteAdd {
			all[r.Path] = true
		} else {
			deleted++
		}
	}
	require.Positive(t, deleted, "the trace deletes routes")
	assert.Equal(t, all, max)
}

// A trace read for a window only (trace.ReadWindow: what compare holds of a
// long trace) gives the plan and the fixtures' index the whole trace gives
// for that window: the same requests under the same record numbers, the
// same sessions and frames, the same routes, the same cut sessions.
func TestWindowedReadPlansTheSame(t *testing.T) {
	path := peakTrace(t, 40, 6*time.Minute, 5)
	read := func(win trace.Window) *trace.Records {
		r, err := trace.Open(path)
		require.NoError(t, err)
		defer r.Close()
		recs, err := trace.ReadWindow(context.Background(), r, win, nil)
		require.NoError(t, err)
		return recs
	}
	whole := read(trace.Window{})
	ixWhole, err := fixtures.BuildIndex(context.Background(), whole, nil)
	require.NoError(t, err)
	for _, win := range []trace.Window{{From: 2 * time.Minute, To: 4 * time.Minute}, {From: 3 * time.Minute}, {To: 2 * time.Minute}} {
		part := read(win)
		assert.Less(t, part.Len(), whole.Len(), "%v: less held", win)
		o := replay.Options{Speed: 10, Users: 2, Jitter: 30 * time.Second, Seed: 3, Window: win}
		want, err := replay.BuildPlan(context.Background(), whole, o, nil)
		require.NoError(t, err)
		got, err := replay.BuildPlan(context.Background(), part, o, nil)
		require.NoError(t, err)
		require.Positive(t, want.Requests)
		assert.Equal(t, want.Requests, got.Requests)
		assert.Equal(t, want.Sessions, got.Sessions)
		assert.Equal(t, want.ClientFrames, got.ClientFrames)
		assert.Equal(t, want.ServerFrames, got.ServerFrames)
		assert.Equal(t, want.Skipped, got.Skipped, "the sessions the window cut")
		assert.Equal(t, want.Vanished, got.Vanished)
		assert.Equal(t, want.Length, got.Length)
		assert.Equal(t, want.Routes, got.Routes)
		require.Equal(t, len(want.Conns), len(got.Conns))
		ixPart, err := fixtures.BuildIndex(context.Background(), part, nil)
		require.NoError(t, err)
		for i, c := range want.Conns {
			g := got.Conns[i]
			assert.Equal(t, c.ID, g.ID)
			assert.Equal(t, c.Open, g.Open)
			assert.Equal(t, c.CloseAt, g.CloseAt)
			require.Equal(t, len(c.Steps), len(g.Steps))
			for k, s := range c.Steps {
				gs := g.Steps[k]
				assert.Equal(t, s.Record, gs.Record, "the same record number")
				assert.Equal(t, s.Target, gs.Target)
				assert.Equal(t, s.At, gs.At)
				assert.Equal(t, s.WS, gs.WS)
				assert.Equal(t, ixWhole.Exchanges[s.Record], ixPart.Exchanges[gs.Record], "the fixtures answer it the same")
				if s.WS != nil {
					ws, gws := ixWhole.Sessions[s.Record], ixPart.Sessions[gs.Record]
					require.NotNil(t, gws)
					// The whole trace's session goes on past the window; what
					// the window plays is the same.
					n := len(gws.Server)
					require.LessOrEqual(t, n, len(ws.Server))
					if n > 0 {
						assert.Equal(t, ws.Server[:n], gws.Server)
					}
					assert.GreaterOrEqual(t, n, len(s.WS.Server), "every frame the replay expects")
				}
			}
		}
	}
}
