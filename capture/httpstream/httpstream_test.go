package httpstream

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// collect records what a parser reports.
type collect struct {
	heads []*Message
	done  []*Message
}

func (c *collect) Head(m *Message) { c.heads = append(c.heads, m) }
func (c *collect) Done(m *Message) { c.done = append(c.done, m) }

// feedAll feeds stream cut at the given offsets, stamping byte i of the
// whole stream with i microseconds so that tests can check first and last
// byte times exactly. It stops where the parser stops consuming.
func feedAll(t interface{ Helper() }, p *Parser, stream string, cuts ...int) (int, error) {
	t.Helper()
	pos := 0
	var firstErr error
	consumed := 0
	bounds := append(append([]int{}, cuts...), len(stream))
	for _, end := range bounds {
		if end < pos || end > len(stream) {
			continue
		}
		chunk := []byte(stream[pos:end])
		base := pos
		n, err := p.Feed(chunk, func(off int) time.Duration { return time.Duration(base+off) * time.Microsecond })
		if err != nil && firstErr == nil {
			firstErr = err
		}
		consumed += n
		if n < len(chunk) {
			return consumed, firstErr
		}
		pos = end
	}
	return consumed, firstErr
}

func us(n int) time.Duration { return time.Duration(n) * time.Microsecond }

func TestKeepAliveRequests(t *testing.T) {
	s := "GET /hub/login HTTP/1.1\r\nHost: hub\r\n\r\n" +
		"POST /hub/login?next=%2Fhub%2F HTTP/1.1\r\nHost: hub\r\nContent-Length: 11\r\n\r\nuser=a&pw=b" +
		"DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
	c := &collect{}
	p := New(false, c)
	n, err := feedAll(t, p, s)
	require.NoError(t, err)
	assert.Equal(t, len(s), n)
	require.Len(t, c.done, 3)
	assert.Equal(t, "GET", c.done[0].Method)
	assert.Equal(t, "/hub/login", c.done[0].Target)
	assert.Equal(t, "HTTP/1.1", c.done[0].Proto)
	assert.Equal(t, us(0), c.done[0].Start)
	assert.Equal(t, us(37), c.done[0].End, "last byte of the blank line")
	assert.Equal(t, int64(11), c.done[1].BodySize)
	assert.Equal(t, "user=a&pw=b", string(c.done[1].Body))
	assert.Equal(t, us(38), c.done[1].Start)
	assert.Equal(t, us(len(s)-42), c.done[1].End)
	assert.Equal(t, "DELETE", c.done[2].Method)
	for _, m := range c.done {
		assert.False(t, m.Incomplete)
	}
}

func TestResponsesFollowRequestMethods(t *testing.T) {
	s := "HTTP/1.1 100 Continue\r\n\r\n" + // an interim answer to the POST
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + // the POST's final answer
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + // HEAD: no body follows
		"HTTP/1.1 204 No Content\r\n\r\n" +
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n" +
		"HTTP/1.0 200 OK\r\n\r\nuntil the end"
	c := &collect{}
	p := New(true, c)
	for _, m := range []string{"POST", "HEAD", "GET", "GET", "GET", "GET", "GET"} {
		p.ExpectResponse(m)
	}
	_, err := feedAll(t, p, s)
	require.NoError(t, err)
	assert.Equal(t, StateBody, p.State(), "close-delimited body waits for the close")
	p.End(us(len(s) + 10))
	require.Len(t, c.done, 7)
	want := []struct {
		status int
		size   int64
		body   string
	}{{100, 0, ""}, {200, 5, "hello"}, {200, 0, ""}, {204, 0, ""}, {304, 0, ""}, {200, 11, "hello world"}, {200, 13, "until the end"}}
	for i, w := range want {
		m := c.done[i]
		assert.Equal(t, w.status, m.Status, "response %d", i)
		assert.Equal(t, w.size, m.BodySize, "response %d", i)
		assert.Equal(t, w.body, string(m.Body), "response %d", i)
		assert.False(t, m.Incomplete, "response %d", i)
	}
	assert.Equal(t, us(len(s)-1), c.done[6].End, "a close-delimited body ends at its last byte")
}

func TestEverySplitGivesTheSameMessages(t *testing.T) {
	s := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n" +
		"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	ref := &collect{}
	_, err := feedAll(t, New(true, ref), s)
	require.NoError(t, err)
	require.Len(t, ref.done, 2)
	for cut := 1; cut < len(s); cut++ {
		for cut2 := cut; cut2 < len(s); cut2 += 7 {
			c := &collect{}
			_, err := feedAll(t, New(true, c), s, cut, cut2)
			require.NoError(t, err, "cuts %d,%d", cut, cut2)
			require.Equal(t, ref.done, c.done, "cuts %d,%d", cut, cut2)
		}
	}
}

func TestPipelinedUpgradePausesRequests(t *testing.T) {
	frames := "\x81\x85abcd" // a masked text frame header: belongs to the WebSocket parser
	s := "GET /user/a/api/kernels/k/channels HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n" + frames
	c := &collect{}
	p := New(false, c)
	n, err := feedAll(t, p, s)
	require.NoError(t, err)
	assert.Equal(t, len(s)-len(frames), n, "bytes after the upgrade request are not HTTP yet")
	assert.Equal(t, StatePaused, p.State())
	require.Len(t, c.done, 1)
	assert.True(t, c.done[0].WantsUpgrade())

	// A refused upgrade: the connection carries HTTP on.
	p.Resume()
	n2, err := feedAll(t, p, "GET /next HTTP/1.1\r\n\r\n")
	require.NoError(t, err)
	assert.Equal(t, 22, n2)
	require.Len(t, c.done, 2)
}

func TestSwitchingProtocolsStopsResponses(t *testing.T) {
	s := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"
	c := &collect{}
	p := New(true, c)
	p.ExpectResponse("GET")
	n, err := feedAll(t, p, s)
	require.NoError(t, err)
	assert.Equal(t, len(s)-4, n)
	assert.Equal(t, StateSwitched, p.State())
	require.Len(t, c.done, 1)
	assert.Equal(t, 101, c.done[0].Status)
}

func TestGapInsideBodyIsCounted(t *testing.T) {
	c := &collect{}
	p := New(true, c)
	_, err := feedAll(t, p, "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n"+strings.Repeat("a", 1000))
	require.NoError(t, err)
	p.Gap(1448, us(5000))
	_, err = feedAll(t, p, strings.Repeat("b", 552)+"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	require.NoError(t, err)
	require.Len(t, c.done, 2)
	assert.Equal(t, int64(3000), c.done[0].BodySize)
	assert.Equal(t, int64(1448), c.done[0].BodyLost)
	assert.False(t, c.done[0].Incomplete)
	assert.False(t, c.done[1].Incomplete)
}

func TestGapInHeadersResyncsOnNextMessage(t *testing.T) {
	c := &collect{}
	p := New(false, c)
	_, err := feedAll(t, p, "GET /a HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)
	p.Gap(100, us(9))
	assert.Equal(t, StateLost, p.State())
	_, err = feedAll(t, p, "ookie: z\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
	require.NoError(t, err)
	require.Len(t, c.done, 2)
	assert.True(t, c.done[0].Incomplete)
	assert.Equal(t, "/b", c.done[1].Target)
	assert.False(t, c.done[1].Incomplete)
}

func TestMalformedInputIsReportedAndSkipped(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"bad request line", "NOT HTTP AT ALL\r\n\r\nGET /ok HTTP/1.1\r\n\r\n"},
		{"bad header line", "GET / HTTP/1.1\r\nno colon here\r\n\r\nGET /ok HTTP/1.1\r\n\r\n"},
		{"bad content length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &collect{}
			p := New(false, c)
			_, err := feedAll(t, p, tc.in)
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
			assert.Contains(t, err.Error(), "malformed HTTP at byte")
			require.NotEmpty(t, c.done)
			last := c.done[len(c.done)-1]
			assert.Equal(t, "/ok", last.Target, "the parser found the next request")
			assert.False(t, last.Incomplete)
		})
	}
}

func TestHeaderBlockLimit(t *testing.T) {
	c := &collect{}
	p := New(false, c)
	p.MaxHeaderBytes = 100
	_, err := feedAll(t, p, "GET / HTTP/1.1\r\nX: "+strings.Repeat("a", 200))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "longer than 100 bytes")
}

func TestBodyKeptUpToLimit(t *testing.T) {
	c := &collect{}
	p := New(false, c)
	p.MaxBody = 4
	_, err := feedAll(t, p, "PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789")
	require.NoError(t, err)
	require.Len(t, c.done, 1)
	assert.Equal(t, "0123", string(c.done[0].Body))
	assert.Equal(t, int64(10), c.done[0].BodySize)
}

func TestEndMidMessageIsIncomplete(t *testing.T) {
	c := &collect{}
	p := New(true, c)
	_, err := feedAll(t, p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
	require.NoError(t, err)
	p.End(us(100))
	require.Len(t, c.done, 1)
	assert.True(t, c.done[0].Incomplete)
	assert.Equal(t, int64(5), c.done[0].BodySize)
}

// Any way of cutting a stream into pieces gives the messages one feed gives.
func TestSplitProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var b strings.Builder
		n := rapid.IntRange(1, 5).Draw(t, "messages")
		for range n {
			body := strings.Repeat("x", rapid.IntRange(0, 40).Draw(t, "body"))
			if rapid.Bool().Draw(t, "chunked") {
				b.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
				if body != "" {
					b.WriteString(strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n")
				}
				b.WriteString("0\r\n\r\n")
			} else {
				b.WriteString("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
			}
		}
		s := b.String()
		ref := &collect{}
		_, err := feedAll(t, New(true, ref), s)
		if err != nil {
			t.Fatal(err)
		}
		cuts := rapid.SliceOfN(rapid.IntRange(0, len(s)), 0, 10).Draw(t, "cuts")
		slices.Sort(cuts)
		c := &collect{}
		_, err = feedAll(t, New(true, c), s, cuts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.done) != n || len(ref.done) != n {
			t.Fatalf("got %d and %d messages, want %d", len(c.done), len(ref.done), n)
		}
		for i := range c.done {
			if c.done[i].BodySize != ref.done[i].BodySize || string(c.done[i].Body) != string(ref.done[i].Body) || c.done[i].End != ref.done[i].End {
				t.Fatalf("message %d differs: %+v vs %+v", i, c.done[i], ref.done[i])
			}
		}
	})
}
