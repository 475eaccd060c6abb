package replay

import (
	"time"

	"github.com/hubreplay/hubreplay/trace"
)

// routeSpans are the stretches of replay time during which each route is
// in the plan's table: from its add to its delete (or the end). They tell
// a request the proxy had no route for because the replayer sent it after
// the route's recorded end from one it should have had.
type routeSpans map[string][]span

type span struct {
	from, to time.Duration
	open     bool // never deleted
}

func newRouteSpans(routes []*trace.Route) routeSpans {
	rs := routeSpans{}
	for _, r := range routes { // in time order
		s := rs[r.Path]
		switch {
		case r.Op == trace.RouteAdd && (len(s) == 0 || !s[len(s)-1].open):
			rs[r.Path] = append(s, span{from: r.TS, open: true})
		case r.Op == trace.RouteDelete && len(s) > 0 && s[len(s)-1].open:
			s[len(s)-1].to, s[len(s)-1].open = r.TS, false
		}
	}
	return rs
}

// endOf returns when the route that served path at replay time at was
// deleted, if one did and was in place then. The longest matching route
// wins, as in the proxy.
func (rs routeSpans) endOf(path string, at time.Duration) (time.Duration, bool) {
	best := ""
	for p := range rs {
		if len(p) > len(best) && trace.Holds(p, path) {
			best = p
		}
	}
	if best == "" {
		return 0, false
	}
	for _, s := range rs[best] {
		if s.from <= at && (s.open || at < s.to) {
			return s.to, !s.open
		}
	}
	return 0, false
}
