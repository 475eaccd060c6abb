package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/trace"
)

// traceContents is what a user compares between two captures of the same
// traffic: how often each exchange (method, target, status, body sizes)
// and each kind of WebSocket frame (direction, opcode, length) occurs, and
// the route events.
func traceContents(t *testing.T, path string) (exchanges, frames, routes map[string]int, gaps int) {
	t.Helper()
	exchanges, frames, routes = map[string]int{}, map[string]int{}, map[string]int{}
	_, recs := readAll(t, path)
	for _, r := range recs {
		switch r := r.(type) {
		case *trace.HTTP:
			k := r.Req.Method + " " + r.Req.Target + " " + strconv.FormatInt(r.Req.BodySize, 10)
			if r.Resp != nil {
				k += fmt.Sprintf(" -> %d %d incomplete=%v", r.Resp.Status, r.Resp.BodySize, r.Resp.Incomplete)
			}
			exchanges[k]++
		case *trace.WSFrame:
			frames[fmt.Sprintf("%s %d %d", r.Dir, r.Op, r.Len)]++
		case *trace.Route:
			routes[string(r.Op)+" "+r.Path]++
		case *trace.Gap:
			gaps++
		}
	}
	return exchanges, frames, routes, gaps
}

// A live capture keeps up with a lecture peak replayed through CHP at 10x:
// tcpdump and `capture --iface lo` record the same traffic, and the two
// traces hold the same exchanges, frames and route events, with no gaps
// and no kernel drops.
func TestLiveCaptureMatchesTcpdump(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture needs root or CAP_NET_RAW; CI runs as root")
	}
	chp := testenv.CHP(t, "4.6.2")
	dir := t.TempDir()
	peak := filepath.Join(dir, "peak.trace")
	r := hubreplay(t, nil, "generate", "lecture-peak", "--users", "120", "--duration", "5m", "--seed", "3", "-o", peak)
	require.Equal(t, 0, r.code, r.stderr)

	hub, public, api := startCHP(t, chp, "live-capture-token-1")
	ports := []string{"--port", strconv.Itoa(public), "--api-port", strconv.Itoa(api), "--raw"}
	dump := testenv.Tcpdump(t, filepath.Join(dir, "peak.pcap"), fmt.Sprintf("tcp port %d or tcp port %d", public, api))
	live := filepath.Join(dir, "live.trace")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		var o, e bytes.Buffer
		code := run(ctx, append([]string{"capture", "--iface", "lo", "-o", live}, ports...), strings.NewReader(""), &o, &e)
		done <- result{code, o.String(), e.String()}
	}()
	time.Sleep(500 * time.Millisecond) // the ring is up in well under this

	r = hubreplay(t, nil, "replay", "--trace", peak, "--target", fmt.Sprintf("http://127.0.0.1:%d", public),
		"--api", fmt.Sprintf("http://127.0.0.1:%d", api), "--hub-listen", fmt.Sprintf("127.0.0.1:%d", hub),
		"--speed", "10", "-o", filepath.Join(dir, "peak.results"))
	require.Equal(t, 0, r.code, r.stderr)
	time.Sleep(500 * time.Millisecond)
	cancel()
	lr := <-done
	dump.Stop(t)
	require.Equal(t, 0, lr.code, lr.stderr)
	t.Logf("live: %s", lastLine(lr.stderr))
	assert.NotContains(t, lr.stderr, "kernel dropped")
	assert.Regexp(t, regexp.MustCompile(` 0 gaps \(0 bytes lost\)`), lr.stderr)

	fromPcap := filepath.Join(dir, "pcap.trace")
	r = hubreplay(t, nil, append([]string{"capture", "--pcap", dump.Path, "-o", fromPcap}, ports...)...)
	require.Equal(t, 0, r.code, r.stderr)
	t.Logf("tcpdump: %s", lastLine(r.stderr))

	le, lf, lroutes, lgaps := traceContents(t, live)
	pe, pf, proutes, pgaps := traceContents(t, fromPcap)
	assert.Zero(t, lgaps, "gaps in the live capture")
	assert.Zero(t, pgaps, "gaps in tcpdump's capture")
	require.NotEmpty(t, pe)
	assert.Equal(t, pe, le, "the same HTTP exchanges")
	assert.Equal(t, pf, lf, "the same WebSocket frames")
	assert.Equal(t, proutes, lroutes, "the same route events")
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
