package trace

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The route that served a path at a moment is the longest in place then.
func TestRouteSpansAt(t *testing.T) {
	s := time.Second
	rs := NewRouteSpans([]*Route{
		{TS: 0, Op: RouteAdd, Path: "/jhub/"},
		{TS: s, Op: RouteAdd, Path: "/jhub/user/u-a/", User: "u-a"},
		{TS: 3 * s, Op: RouteDelete, Path: "/jhub/user/u-a/"},
		{TS: 5 * s, Op: RouteAdd, Path: "/jhub/user/u-a/", User: "u-a"},
	})
	at := func(ts time.Duration) RouteSpan {
		r, ok := rs.At("/jhub/user/u-a/lab", ts)
		assert.True(t, ok)
		return r
	}
	assert.Equal(t, "/jhub/", at(500*time.Millisecond).Path, "before the user's route: the hub's")
	assert.Equal(t, RouteSpan{Path: "/jhub/user/u-a/", From: s, To: 3 * s, User: true}, at(2*s))
	assert.Equal(t, "/jhub/", at(4*s).Path, "stopped: the hub's again")
	assert.True(t, at(6*s).Open)
	_, ok := rs.At("/other", 2*s)
	assert.False(t, ok)
	assert.True(t, rs.User("/jhub/user/u-a/api"))
	assert.False(t, rs.User("/jhub/hub/home"))
	assert.True(t, rs.HasUsers())
	assert.True(t, Holds("/", "/anything"))
	assert.False(t, Holds("/user/u-a", "/user/u-ab"))
}
