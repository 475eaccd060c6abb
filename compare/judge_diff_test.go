package compare

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/replay"
)

// A request the harness sent out of order (late for its route) or stopped
// is not a difference between the candidates: the table would otherwise
// blame B, or A' against A, for the harness's doing. A real difference on
// the same endpoint still shows.
func TestDiffLeavesOutTheHarnesssDoing(t *testing.T) {
	req := func(rec int64, status int, class string) *replay.Request {
		return &replay.Request{Record: rec, Method: "GET", Target: "/user/u-1/lab", Status: status, Error: class}
	}
	a := []*replay.Request{req(1, 302, ""), req(2, 302, ""), req(3, 302, ""), req(4, 302, "")}
	harness := []*replay.Request{req(1, 503, replay.ErrLateForRoute), req(2, 302, ""), req(3, 0, replay.ErrCancelled), req(4, 302, "")}
	assert.Empty(t, diffClasses(a, harness, nil), "A against A with the harness late once and stopped once")

	proxy := []*replay.Request{req(1, 503, replay.ErrLateForRoute), req(2, 503, replay.ErrProxy5xx), req(3, 302, ""), req(4, 302, "")}
	d := diffClasses(a, proxy, nil)
	require.Len(t, d, 1)
	assert.Equal(t, "GET /user/{user}/lab", d[0].Class)
	assert.Equal(t, 3, d[0].Requests, "the late request is not counted as compared")
	assert.Equal(t, 1, d[0].Differ)
	assert.Equal(t, []string{"302 0B → 503 (proxy_5xx) ×1"}, d[0].Top)
}
