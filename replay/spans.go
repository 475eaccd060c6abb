package replay

import (
	"time"

	"github.com/hubreplay/hubreplay/trace"
)

// routeSpans are the stretches of replay time during which each route is
// in the plan's table. They tell a request the proxy had no route for
// because the replayer sent it after the route's recorded end from one it
// should have had.
type routeSpans struct{ trace.RouteSpans }

func newRouteSpans(routes []*trace.Route) routeSpans {
	return routeSpans{trace.NewRouteSpans(routes)}
}

// endOf returns when the route that served path at replay time at was
// deleted, if one was in place then and was deleted later.
func (rs routeSpans) endOf(path string, at time.Duration) (time.Duration, bool) {
	s, ok := rs.At(path, at)
	return s.To, ok && !s.Open
}
