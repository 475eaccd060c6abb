package trace_test

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

func summarize(t *testing.T, data []byte) (*trace.Summary, error) {
	t.Helper()
	r, err := trace.NewReader(bytes.NewReader(data), "mem.trace")
	require.NoError(t, err)
	defer r.Close()
	return trace.Summarize(context.Background(), r, nil)
}

func TestSummaryCountsWhatATraceHolds(t *testing.T) {
	s, err := summarize(t, writeAll(t, testHeader, nil, oneOfEach()))
	require.NoError(t, err)

	assert.Equal(t, uint64(14), s.Records)
	assert.Equal(t, uint64(2), s.ByType[trace.TypeHTTP])
	assert.Equal(t, 4*time.Second, s.Duration)
	assert.Equal(t, testHeader.Start.Add(4*time.Second), s.End)

	assert.Equal(t, uint64(2), s.Conns.Opened)
	assert.Equal(t, uint64(1), s.Conns.Mid)
	assert.Equal(t, map[trace.CloseHow]uint64{trace.CloseRST: 1, trace.CloseCaptureEnd: 1}, s.Conns.Closed)
	assert.Equal(t, 2, s.Conns.Peak)
	assert.Equal(t, 6*time.Millisecond, s.Conns.PeakAt)

	assert.Equal(t, uint64(2), s.HTTP.Exchanges)
	assert.Equal(t, uint64(1), s.HTTP.Upgrades)
	assert.Equal(t, map[string]uint64{"GET": 1, "POST": 1}, s.HTTP.ByMethod)
	assert.Equal(t, map[string]uint64{"2xx": 1, "none": 1}, s.HTTP.ByStatus)

	assert.Equal(t, uint64(2), s.WS.Frames)
	assert.Equal(t, int64(314), s.WS.Bytes)
	assert.Equal(t, map[string]uint64{"c2s text": 1, "s2c close": 1}, s.WS.ByDirOp)
	assert.Equal(t, map[string]uint64{"execute_request": 1}, s.WS.ByMsgType)

	assert.Equal(t, []string{"u-3c9d1e"}, s.Users)
	assert.Equal(t, trace.RouteSummary{Added: 1, Deleted: 1}, s.Routes)
	assert.Equal(t, trace.GapSummary{Count: 1, Bytes: 1448}, s.Gaps)
	require.NotNil(t, s.Capture)
	assert.Equal(t, uint64(1e6), s.Capture.Packets)

	require.Len(t, s.Minutes, 1)
	m := s.Minutes[0]
	assert.Equal(t, uint64(2), m.HTTP)
	assert.Equal(t, uint64(2), m.WS)
	assert.Equal(t, 2, m.Open)
	assert.Equal(t, 1, m.Users)
	assert.Empty(t, s.Damage)
}

// On the sample session the summary agrees with counts taken straight
// from the records, minute by minute.
func TestSummaryOfSampleSession(t *testing.T) {
	h, recs := tracetest.Sample(tracetest.SampleOptions{Seed: 7, Users: 25, Duration: 12 * time.Minute})
	s, err := summarize(t, writeAll(t, h, nil, recs))
	require.NoError(t, err)

	users := map[string]bool{}
	perMinute := map[int]uint64{}
	var fiveXX, ws uint64
	for _, r := range recs {
		switch r := r.(type) {
		case *trace.HTTP:
			users[r.User] = true
			if r.Resp != nil && r.Resp.Status >= 500 {
				fiveXX++
			}
			perMinute[int(r.TS/time.Minute)]++
		case *trace.WSFrame:
			ws++
		}
	}
	delete(users, "")
	assert.Len(t, s.Users, 25)
	assert.Len(t, users, 25)
	assert.Equal(t, fiveXX, s.HTTP.ByStatus["5xx"])
	assert.Equal(t, ws, s.WS.Frames)
	require.Len(t, s.Minutes, 13, "minutes 0..12")
	var sum5xx uint64
	for i, m := range s.Minutes {
		assert.Equal(t, perMinute[i], m.HTTP, "minute %d", i)
		assert.Equal(t, h.Start.Add(time.Duration(i)*time.Minute), m.Start)
		assert.LessOrEqual(t, m.Open, s.Conns.Peak)
		sum5xx += m.Errors
	}
	assert.Equal(t, fiveXX, sum5xx)
	assert.Equal(t, s.Conns.Opened, s.Conns.Closed[trace.CloseFIN]+s.Conns.Closed[trace.CloseRST]+s.Conns.Closed[trace.CloseCaptureEnd],
		"the sample closes every connection it opens")

	var text bytes.Buffer
	require.NoError(t, s.WriteText(&text, time.UTC))
	out := text.String()
	assert.Contains(t, out, "users        25 distinct")
	assert.Regexp(t, `(?m)^start +2026-11-03 15:50:00.000 UTC$`, out)
	assert.Contains(t, out, "per minute:")
	rows := regexp.MustCompile(`(?m)^ +\+\d+ +\d\d:\d\d +\d+`).FindAllString(out, -1)
	assert.Len(t, rows, 13, "one table row per minute")
}

func TestSummaryOfDamagedTrace(t *testing.T) {
	data, _, counts := framedTrace(t, oneOfEach(), 5, 8)
	s, err := summarize(t, data[:len(data)-40])
	require.Error(t, err)
	require.NotNil(t, s)
	assert.Equal(t, uint64(counts[1]), s.Records, "the summary covers the whole frames before the damage")
	assert.Contains(t, s.Damage, "truncated at byte")
}

func TestUserOf(t *testing.T) {
	for path, want := range map[string]string{
		"/user/u-1/lab":            "u-1",
		"/user/u-1":                "u-1",
		"/user/u-1?token=x":        "u-1",
		"/hub/api/users":           "",
		"/user/":                   "",
		"/users/u-1/":              "",
		"/user/u-1/api/kernels/k/": "u-1",
	} {
		assert.Equal(t, want, trace.UserOf(path), path)
	}
}
