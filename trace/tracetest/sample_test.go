package tracetest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

func TestSampleIsDeterministic(t *testing.T) {
	o := tracetest.SampleOptions{Seed: 5, Users: 10, Duration: 5 * time.Minute}
	h1, r1 := tracetest.Sample(o)
	h2, r2 := tracetest.Sample(o)
	assert.Equal(t, h1, h2)
	assert.Equal(t, r1, r2)
	o.Seed = 6
	_, r3 := tracetest.Sample(o)
	assert.NotEqual(t, r1, r3)
}

// The sample is what a capture could have seen: in time order within the
// trace's span, every connection opened before it is used and closed once
// after, WebSocket frames only after a 101, routes added before deleted.
func TestSampleIsPlausible(t *testing.T) {
	o := tracetest.SampleOptions{Seed: 1, Users: 30, Duration: 10 * time.Minute}
	_, recs := tracetest.Sample(o)
	require.True(t, slices.IsSortedFunc(recs, func(a, b trace.Record) int { return int(a.Time() - b.Time()) }))

	require.NoError(t, tracetest.OrderRule(recs))
	open, ws := map[trace.ConnID]bool{}, map[trace.ConnID]bool{}
	routes := map[string]bool{}
	kinds := map[string]int{}
	for _, r := range recs {
		require.GreaterOrEqual(t, r.Time(), time.Duration(0))
		require.LessOrEqual(t, r.Time(), o.Duration)
		switch r := r.(type) {
		case *trace.ConnOpen:
			open[r.Conn] = true
		case *trace.ConnClose:
			delete(open, r.Conn)
			kinds["close "+string(r.How)]++
		case *trace.HTTP:
			if r.Upgrade && r.Resp != nil && r.Resp.Status == 101 {
				ws[r.Conn] = true
			}
			if r.Resp != nil && r.Resp.Status >= 500 {
				kinds["5xx"]++
			}
		case *trace.WSFrame:
			require.True(t, ws[r.Conn], "frame on conn %d before its upgrade", r.Conn)
			if r.Op == trace.OpText {
				require.NotEmpty(t, r.MsgType)
				require.NotEmpty(t, r.Channel)
			}
		case *trace.Route:
			if r.Op == trace.RouteAdd {
				routes[r.Path] = true
			} else {
				require.True(t, routes[r.Path], "route %s deleted before it was added", r.Path)
				kinds["route delete"]++
			}
		case *trace.Gap:
			kinds["gap"]++
		}
	}
	assert.Empty(t, open, "every connection is closed, if only by the capture's end")
	assert.Len(t, routes, 30)
	// What hurts proxies is in it: vanished clients, errors, lost bytes, churn.
	for _, k := range []string{"close rst", "close fin", "5xx", "gap", "route delete"} {
		assert.Positive(t, kinds[k], k)
	}
}
