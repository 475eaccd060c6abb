// Package replay turns a trace into timed client traffic against a proxy:
// each recorded connection opens at its (scaled) time and sends its
// requests in order, each at its recorded offset but never before the
// previous response on that connection ended; WebSocket sessions send
// their client frames as recorded and read the server's; clients vanish
// the way the recording's did. Every request carries its record number
// (trace.RecordHeader) so that the fixtures behind the proxy answer as
// recorded. What happened to each request and session goes to a results
// file (results.go).
package replay

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hubreplay/hubreplay/trace"
)

// Options choose what part of a trace is replayed and how.
type Options struct {
	// Speed divides recorded times: 4 plays a 40-minute trace in 10.
	// 0 (see ParseSpeed's "max") sends as fast as the target answers.
	Speed float64
	// Users multiplies the recorded users: each connection is replayed
	// Users times, the copies under fresh pseudonyms and shifted by a
	// seeded jitter up to Jitter (trace time).
	Users  int
	Jitter time.Duration
	Seed   uint64
	// Window limits the replay to [From, To) of trace time.
	Window trace.Window
	// Shard replays only this process's share of the connections.
	Shard Shard
	// RouteLead is how much earlier (wall-clock) route adds are applied
	// than recorded (default 250 ms), RouteLag how much later deletes
	// (default 2 s). The hub adds a route before it sends the user there,
	// and deletes it after the user's last request; in a trace the two
	// are milliseconds apart, closer than a route API call takes at high
	// speeds, or than a replayer on a loaded machine keeps its schedule.
	// A late delete changes no answer: the fixtures answer by record.
	RouteLead, RouteLag time.Duration
	// VanishHold is how long (trace time) a client that went silent in the
	// recording (a laptop asleep) holds its connection open, reading and
	// sending nothing, before it resets it; 0 holds it to the replay's
	// end.
	VanishHold time.Duration
}

// Shard is one of Count deterministic parts of a replay (Index from 0).
type Shard struct{ Index, Count int }

// ParseShard reads "i/N".
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("shard %q: give i/N with 0 ≤ i < N, e.g. 0/4", s)
	}
	return Shard{i, n}, nil
}

func (s Shard) String() string {
	if s.Count <= 1 {
		return "0/1"
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// ParseSpeed reads a speed: a factor from 0.1 to 100, or "max" (0).
func ParseSpeed(s string) (float64, error) {
	if strings.EqualFold(s, "max") {
		return 0, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSuffix(s, "x"), "×"), 64)
	if err != nil || f < 0.1 || f > 100 {
		return 0, fmt.Errorf("speed %q: give a factor from 0.1 to 100, or max", s)
	}
	return f, nil
}

// SpeedString shows a speed as the command line takes it.
func SpeedString(f float64) string {
	if f <= 0 {
		return "max"
	}
	return strconv.FormatFloat(f, 'g', -1, 64) + "x"
}

// Plan is a trace made ready to replay: connections with their scripts, in
// the order they open, and the route events for the hub stub.
type Plan struct {
	Header trace.Header
	Opts   Options
	Conns  []*Conn // by Open
	// Routes are the route events (clones' included) in replay time
	// (trace time from the window's start), for the hub stub.
	Routes []*trace.Route
	// Length is how much trace time the replay covers.
	Length time.Duration
	// Requests, Sessions and Frames count what the plan will send;
	// Skipped what the window cut off mid-way (WebSocket sessions whose
	// upgrade precedes the window).
	Requests, Sessions, ClientFrames, ServerFrames, Skipped int
	// Vanished counts the connections whose client vanished in the
	// recording: a reset, silence, or a close mid-answer. Leaks are per 1,000 of
	// them: the incident's proxy kept a socket for each.
	Vanished int
}

// quietOf is when a connection's recorded client went silent, within
// the window (0: it did not, or not before the window's end).
func quietOf(c *trace.ConnClose, win trace.Window) time.Duration {
	if c == nil || c.Quiet <= 0 || win.To > 0 && c.Quiet >= win.To {
		return 0
	}
	return max(c.Quiet, win.From)
}

// Vanished tells whether a connection's recorded client vanished: it
// reset the connection, went silent, or closed it while an answer was
// still coming.
func vanished(c *trace.ConnClose, steps []*Step) bool {
	if c.Vanished() != "" {
		return true
	}
	if c == nil || c.By != trace.SideClient {
		return false
	}
	last := steps[len(steps)-1].HTTP
	return c.How == trace.CloseFIN && last.Resp != nil && last.Resp.Incomplete
}

// Conn is one connection to replay. Times are replay times: trace time
// from the window's start, plus the clone's shift.
type Conn struct {
	ID    uint64        // unique in the plan (and across shards)
	Orig  trace.ConnID  // the recording's connection
	Clone int           // 0 for the recorded user, 1… for copies
	User  string        // the user's pseudonym (the clone's own)
	Shift time.Duration // replay time = recorded time + Shift
	Open  time.Duration
	Steps []*Step
	// Close is how the recording ended the connection; nil when the
	// trace does not say (it ends at the plan's end).
	Close *trace.ConnClose
	// CloseAt is when, in replay time.
	CloseAt time.Duration
	// QuietAt is when the recording's client went silent (Close.Quiet),
	// in replay time; 0 if it did not: from then on the replay's client
	// reads and sends nothing, holding the connection open.
	QuietAt time.Duration
}

// Step is one request, with the WebSocket session that follows a 101.
type Step struct {
	Record  int64 // the record's number: trace.RecordHeader
	HTTP    *trace.HTTP
	At      time.Duration // replay time of the request's first byte
	Target  string        // the request target, rewritten for a clone
	Headers []trace.Field // the request headers, rewritten for a clone
	WS      *Script
}

// Script is what a recorded WebSocket session did after its upgrade.
type Script struct {
	// Client are the client's frames, in order; Server the server's, to
	// be read and matched in order.
	Client []*trace.WSFrame
	Server []*trace.WSFrame
	// Reply[i] is the index of the first server frame the recording saw
	// after client frame i (len(Server) if none): round trips are timed
	// from frame i's send to that frame's arrival.
	Reply []int
}

type recordedConn struct {
	open  *trace.ConnOpen
	steps []*Step
	close *trace.ConnClose
	user  string
}

// Source is a trace read from its start: a *trace.Reader, or the
// *trace.Records the fixtures' index is built from too (one decoded copy).
type Source interface {
	EachNumbered(ctx context.Context, progress func(offset int64), fn func(int64, trace.Record) error) error
}

// BuildPlan reads a trace (positioned at its start) into a plan.
func BuildPlan(ctx context.Context, r Source, o Options, progress func(int64)) (*Plan, error) {
	if o.Users < 1 {
		o.Users = 1
	}
	if o.Shard.Count < 1 {
		o.Shard = Shard{0, 1}
	}
	win := o.Window
	if win.To <= 0 {
		win.To = time.Duration(1<<63 - 1)
	}
	p := &Plan{Opts: o}
	conns := map[trace.ConnID]*recordedConn{}
	var order []trace.ConnID
	var maxConn trace.ConnID // copies' ids start above it
	frames := map[trace.ConnID][]*trace.WSFrame{}
	var routes []*trace.Route
	var end time.Duration
	get := func(id trace.ConnID) *recordedConn {
		c := conns[id]
		if c == nil {
			c = &recordedConn{}
			conns[id] = c
			order = append(order, id)
			maxConn = max(maxConn, id)
		}
		return c
	}
	err := r.EachNumbered(ctx, progress, func(n int64, rec trace.Record) error {
		end = max(end, rec.Time())
		switch rec := rec.(type) {
		case *trace.Header:
			p.Header = *rec
		case *trace.ConnOpen:
			get(rec.Conn).open = rec
		case *trace.ConnClose:
			get(rec.Conn).close = rec
		case *trace.HTTP:
			end = max(end, rec.End())
			c := get(rec.Conn)
			if c.user == "" {
				c.user = rec.User
			}
			c.steps = append(c.steps, &Step{Record: n, HTTP: rec, Target: rec.Req.Target, Headers: rec.Req.Headers})
		case *trace.WSFrame:
			frames[rec.Conn] = append(frames[rec.Conn], rec)
		case *trace.Route:
			routes = append(routes, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read trace for replay: %w", err)
	}
	win.To = min(win.To, end+1) // the trace's last records are inside
	if win.From >= win.To {
		return nil, fmt.Errorf("the window [%s, %s) holds nothing: the trace ends at %s", win.From, win.To, end)
	}
	p.Length = min(win.To, end) - win.From

	jitter := rand.New(rand.NewPCG(o.Seed, 0x6875627265706c61)) // "hubrepla"
	shifts := make([]time.Duration, o.Users)
	for k := 1; k < o.Users; k++ {
		if o.Jitter > 0 {
			shifts[k] = time.Duration(jitter.Int64N(int64(o.Jitter)))
		}
	}
	userShift := map[string][]time.Duration{} // per user, per clone: its own jitter
	shiftOf := func(user string, k int) time.Duration {
		if k == 0 || o.Jitter <= 0 {
			return 0
		}
		if user == "" {
			return shifts[k]
		}
		s := userShift[user]
		if s == nil {
			h := fnv.New64a()
			h.Write([]byte(user))
			rr := rand.New(rand.NewPCG(o.Seed, h.Sum64()))
			s = make([]time.Duration, o.Users)
			for i := 1; i < o.Users; i++ {
				s[i] = time.Duration(rr.Int64N(int64(o.Jitter)))
			}
			userShift[user] = s
		}
		return s[k]
	}

	for _, id := range order {
		rc := conns[id]
		slices.SortStableFunc(rc.steps, func(a, b *Step) int { return cmp.Compare(a.HTTP.TS, b.HTTP.TS) })
		fs := frames[id]
		slices.SortStableFunc(fs, func(a, b *trace.WSFrame) int { return cmp.Compare(a.TS, b.TS) })
		quiet := quietOf(rc.close, win)
		steps, skipped := windowSteps(rc.steps, fs, win, quiet)
		p.Skipped += skipped
		if len(steps) == 0 {
			continue
		}
		open := steps[0].HTTP.TS
		if rc.open != nil && rc.open.TS >= win.From && !rc.open.Mid {
			open = min(open, rc.open.TS)
		}
		closeAt := end
		if rc.close != nil {
			closeAt = rc.close.TS
		}
		closeAt = min(closeAt, win.To)
		gone := vanished(rc.close, steps) && (rc.close.TS < win.To || quiet > 0)
		for k := range o.Users {
			shift := shiftOf(rc.user, k) - win.From
			user := rc.user
			if k > 0 && user != "" {
				user = clonePseudonym(rc.user, k, o.Seed)
			}
			cid := uint64(k)*uint64(maxConn+1) + uint64(id)
			if !o.Shard.owns(rc.user, k, cid) {
				continue
			}
			c := &Conn{ID: cid, Orig: id, Clone: k, User: user, Shift: shift, Open: open + shift, Close: rc.close, CloseAt: closeAt + shift}
			if quiet > 0 {
				c.QuietAt = max(quiet+shift, c.Open)
			}
			for _, s := range steps {
				s2 := *s
				s2.At = s.HTTP.TS + shift
				if k > 0 && rc.user != "" {
					s2.Target = renameUser(s.Target, rc.user, user)
					s2.Headers = renameHeaders(s.Headers, rc.user, user)
				}
				c.Steps = append(c.Steps, &s2)
				p.Requests++
				if s.WS != nil {
					p.Sessions++
					p.ClientFrames += len(s.WS.Client)
					p.ServerFrames += len(s.WS.Server)
				}
			}
			p.Conns = append(p.Conns, c)
			if gone {
				p.Vanished++
			}
		}
	}
	slices.SortStableFunc(p.Conns, func(a, b *Conn) int { return cmp.Or(cmp.Compare(a.Open, b.Open), cmp.Compare(a.ID, b.ID)) })
	p.Routes = planRoutes(routes, win, o, shiftOf)
	return p, nil
}

// windowSteps keeps a connection's requests that start inside the window,
// attaching each 101's session; it returns how many WebSocket sessions were
// left out because they were upgraded before the window. A session's
// frames end where its client went quiet: what the server sent after
// that never reached it (the capture saw it unacknowledged), nor does it
// reach a replay's client, asleep from then on (quiet, as quietOf gives it).
func windowSteps(steps []*Step, frames []*trace.WSFrame, win trace.Window, quiet time.Duration) ([]*Step, int) {
	var out []*Step
	skipped := 0
	for i, s := range steps {
		ws := s.HTTP.Upgrade && s.HTTP.Resp != nil && s.HTTP.Resp.Status == 101
		if s.HTTP.TS < win.From || s.HTTP.TS >= win.To {
			if ws && s.HTTP.TS < win.From {
				skipped++
			}
			continue
		}
		if ws {
			// The session's frames are those after its upgrade and before
			// the connection's next request (there is none after a 101).
			next := time.Duration(1<<63 - 1)
			if i+1 < len(steps) {
				next = steps[i+1].HTTP.TS
			}
			if quiet > 0 {
				next = min(next, quiet)
			}
			s.WS = newScript(frames, s.HTTP.TS, min(next, win.To))
		}
		out = append(out, s)
	}
	return out, skipped
}

func newScript(frames []*trace.WSFrame, from, to time.Duration) *Script {
	s := &Script{}
	for _, f := range frames {
		if f.TS < from || f.TS >= to {
			continue
		}
		if f.Dir == trace.ClientToServer {
			s.Client = append(s.Client, f)
			s.Reply = append(s.Reply, -1)
			continue
		}
		for i := len(s.Reply) - 1; i >= 0 && s.Reply[i] < 0; i-- {
			s.Reply[i] = len(s.Server)
		}
		s.Server = append(s.Server, f)
	}
	for i := range s.Reply {
		if s.Reply[i] < 0 {
			s.Reply[i] = len(s.Server)
		}
	}
	return s
}

// planRoutes gives the hub stub its events in replay time: the table as it
// stood at the window's start (added at 0), then the window's changes, each
// user's also for every clone. At "max" speed time means nothing, so every
// route is added at 0 and none deleted: the table holds everyone, as at
// the peak.
func planRoutes(routes []*trace.Route, win trace.Window, o Options, shiftOf func(string, int) time.Duration) []*trace.Route {
	slices.SortStableFunc(routes, func(a, b *trace.Route) int { return cmp.Compare(a.TS, b.TS) })
	live := map[string]*trace.Route{}
	var paths []string
	var in []*trace.Route
	for _, r := range routes {
		switch {
		case r.TS < win.From || o.Speed <= 0:
			if r.Op == trace.RouteAdd {
				if live[r.Path] == nil {
					paths = append(paths, r.Path)
				}
				live[r.Path] = r
			} else if r.TS < win.From {
				delete(live, r.Path) // at max speed, a delete in the window is not made
			}
		case r.TS < win.To:
			in = append(in, r)
		}
	}
	var out []*trace.Route
	for _, path := range paths {
		if r := live[path]; r != nil {
			for k := range o.Users {
				c := cloneRoute(r, k, o.Seed)
				c.TS = 0
				out = append(out, c)
			}
		}
	}
	lead, lag := o.RouteLead, o.RouteLag
	if lead <= 0 {
		lead = 250 * time.Millisecond
	}
	if lag <= 0 {
		lag = 2 * time.Second
	}
	lead = time.Duration(float64(lead) * o.Speed) // in trace time
	lag = time.Duration(float64(lag) * o.Speed)
	for _, r := range in {
		for k := range o.Users {
			c := cloneRoute(r, k, o.Seed)
			c.TS = r.TS - win.From + shiftOf(r.User, k)
			if r.Op == trace.RouteAdd {
				c.TS -= lead
			} else {
				c.TS += lag
			}
			c.TS = max(0, c.TS)
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b *trace.Route) int { return cmp.Compare(a.TS, b.TS) })
	return out
}

func cloneRoute(r *trace.Route, k int, seed uint64) *trace.Route {
	c := *r
	user := r.User
	if user == "" {
		user = trace.UserOf(r.Path)
	}
	if k == 0 || user == "" {
		return &c
	}
	name := clonePseudonym(user, k, seed)
	c.User = name
	c.Path = renameUser(r.Path, user, name)
	if len(r.Data) > 0 {
		c.Data = []byte(strings.ReplaceAll(string(r.Data), `"`+user+`"`, `"`+name+`"`))
	}
	return &c
}

// clonePseudonym names the k-th copy of a user: a fresh pseudonym of the
// trace's form (u-xxxxxxxx), the same for the same seed.
func clonePseudonym(user string, k int, seed uint64) string {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(k))
	h.Write(b[:])
	h.Write([]byte(user))
	return fmt.Sprintf("u-%08x", uint32(h.Sum64()))
}

// renameUser moves a path (or a URL in a header) from one user's space
// to another's: /user/OLD/… and /user/OLD (end, ? or #) only.
func renameUser(s, old, name string) string {
	from := "/user/" + old
	if !strings.Contains(s, from) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, from)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		rest := s[i+len(from):]
		b.WriteString(s[:i])
		if rest == "" || strings.ContainsRune("/?#&\"", rune(rest[0])) {
			b.WriteString("/user/" + name)
		} else {
			b.WriteString(from)
		}
		s = rest
	}
}

func renameHeaders(hs []trace.Field, old, name string) []trace.Field {
	out := make([]trace.Field, len(hs))
	for i, f := range hs {
		out[i] = trace.Field{f[0], renameUser(f[1], old, name)}
	}
	return out
}

// owns says whether this shard replays a connection: a user's connections
// stay together (each clone being a user of its own), so that one shard
// plays a user's whole session; connections of no user go by their id.
func (s Shard) owns(user string, clone int, id uint64) bool {
	if s.Count <= 1 {
		return true
	}
	h := fnv.New64a()
	if user != "" {
		h.Write([]byte(user))
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(clone))
		h.Write(b[:])
	} else {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], id)
		h.Write(b[:])
	}
	return int(h.Sum64()%uint64(s.Count)) == s.Index
}

// ErrEmpty says a plan has nothing to send.
var ErrEmpty = errors.New("nothing to replay: no requests in the trace (or its window, or this shard)")
