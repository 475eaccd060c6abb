package trace

import (
	"strings"
	"time"
)

// Holds tells whether a request for path falls under a route at prefix
// (whole segments, as the proxy matches them; "/" holds everything).
func Holds(prefix, path string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return path == prefix || strings.HasPrefix(path, prefix+"/") || prefix == ""
}

// RouteSpans are the stretches of time during which each route was in the
// routing table, from its add to its delete (or for good), as route records
// (in time order) tell them.
type RouteSpans map[string][]RouteSpan

// RouteSpan is one stretch of a route.
type RouteSpan struct {
	Path     string
	From, To time.Duration
	Open     bool // never deleted
	User     bool // a user's server's route (not the hub's, nor a service's)
}

// NewRouteSpans reads route records, in time order.
func NewRouteSpans(routes []*Route) RouteSpans {
	rs := RouteSpans{}
	for _, r := range routes {
		s := rs[r.Path]
		switch {
		case r.Op == RouteAdd && (len(s) == 0 || !s[len(s)-1].Open):
			rs[r.Path] = append(s, RouteSpan{Path: r.Path, From: r.TS, Open: true, User: r.User != ""})
		case r.Op == RouteDelete && len(s) > 0 && s[len(s)-1].Open:
			s[len(s)-1].To, s[len(s)-1].Open = r.TS, false
		}
	}
	return rs
}

// At returns the route that served path at time at: of those in place
// then, the longest that holds it, as in the proxy.
func (rs RouteSpans) At(path string, at time.Duration) (RouteSpan, bool) {
	var best RouteSpan
	found := false
	for p, spans := range rs {
		if found && len(p) <= len(best.Path) || !Holds(p, path) {
			continue
		}
		for _, s := range spans {
			if s.From <= at && (s.Open || at < s.To) {
				best, found = s, true
				break
			}
		}
	}
	return best, found
}

// User tells whether path falls under a route made for a user's server at
// any time, whatever the hub's base URL.
func (rs RouteSpans) User(path string) bool {
	for p, spans := range rs {
		if len(spans) > 0 && spans[0].User && Holds(p, path) {
			return true
		}
	}
	return false
}

// HasUsers tells whether any route is a user's.
func (rs RouteSpans) HasUsers() bool {
	for _, spans := range rs {
		if len(spans) > 0 && spans[0].User {
			return true
		}
	}
	return false
}
