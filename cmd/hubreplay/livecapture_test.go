package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
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
	// The same kernel buffer as tcpdump's (-B 256 MiB in testenv.Tcpdump):
	// make test runs this beside other packages' tests, and with the
	// default 64 MiB a starved reader overflowed it once (10,200 drops,
	// counted and shown) while tcpdump, which parses nothing, kept up.
	capturing := background(t, nil, append([]string{"capture", "--iface", "lo", "--buffer-size", "256Mi", "-o", live}, ports...)...)
	time.Sleep(500 * time.Millisecond) // the ring is up in well under this

	r = hubreplay(t, nil, "replay", "--trace", peak, "--target", fmt.Sprintf("http://127.0.0.1:%d", public),
		"--api", fmt.Sprintf("http://127.0.0.1:%d", api), "--hub-listen", fmt.Sprintf("127.0.0.1:%d", hub),
		"--speed", "10", "-o", filepath.Join(dir, "peak.results"))
	require.Equal(t, 0, r.code, r.stderr)
	time.Sleep(500 * time.Millisecond)
	lr := capturing.Stop()
	dump.Stop(t)
	require.Equal(t, 0, lr.code, lr.stderr)
	t.Logf("live: %s", lastLine(lr.stderr))
	assert.NotContains(t, lr.stderr, "packets were dropped")
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

// bg is hubreplay running in the background.
type bg struct {
	stderr *testenv.Buffer // readable while it runs
	cancel context.CancelFunc
	done   chan result
}

// Wait waits for it to end by itself.
func (b *bg) Wait() result { r := <-b.done; b.done <- r; return r }

// Stop stops it as Ctrl-C would, and waits.
func (b *bg) Stop() result { b.cancel(); return b.Wait() }

// background runs hubreplay with args, its standard output going to stdout
// (nil: kept in the result; a Closer is closed at the end).
func background(t *testing.T, stdout io.Writer, args ...string) *bg {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &bg{stderr: &testenv.Buffer{}, cancel: cancel, done: make(chan result, 1)}
	go func() {
		var o bytes.Buffer
		w := stdout
		if w == nil {
			w = &o
		}
		code := run(ctx, args, strings.NewReader(""), w, b.stderr)
		if c, ok := stdout.(io.Closer); ok {
			c.Close()
		}
		b.done <- result{code, o.String(), b.stderr.String()}
	}()
	t.Cleanup(cancel)
	return b
}

// markedProcess starts a process whose command line holds marker, to be
// watched and killed as a proxy that crashes.
func markedProcess(t *testing.T, marker string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 120; : "+marker)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// waitForDump waits for the flight recorder's first dump in dir.
func waitForDump(t *testing.T, dir string, stderr *testenv.Buffer) string {
	t.Helper()
	var dump string
	require.Eventually(t, func() bool {
		dumps, _ := filepath.Glob(filepath.Join(dir, "lecture-*.trace"))
		if len(dumps) == 0 || !strings.Contains(stderr.String(), "flight recorder: wrote") {
			return false
		}
		dump = dumps[0]
		return true
	}, time.Minute, 100*time.Millisecond, "the recording is written out: %s", stderr.String())
	return dump
}

// count counts the records of type T.
func count[T trace.Record](recs []trace.Record) int {
	n := 0
	for _, r := range recs {
		if _, ok := r.(T); ok {
			n++
		}
	}
	return n
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// The flight recorder on a live loopback stream: after 5 minutes of
// requests, SIGUSR1 writes the last 2 minutes as a trace that reads back
// whole, recording goes on, and Ctrl-C writes -o and leaves no segments.
func TestFlightRecorder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture needs root or CAP_NET_RAW; CI runs as root")
	}
	t.Parallel() // five minutes of waiting, beside the package's other tests
	addr, port := testenv.Serve(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "lecture.trace")
	capturing := background(t, nil, "capture", "--iface", "lo", "--port", strconv.Itoa(port), "--ring", "2m", "--raw", "-o", out)
	// A request every 200 ms, each naming the second it was sent in.
	began := time.Now()
	stream := make(chan struct{})
	go func() {
		defer close(stream)
		for time.Since(began) < 5*time.Minute+10*time.Second {
			sec := int(time.Since(began) / time.Second)
			if resp, err := http.Get(fmt.Sprintf("http://%s/user/x/api/contents?size=200&second=%d", addr, sec)); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	time.Sleep(5 * time.Minute)
	signalled := int(time.Since(began) / time.Second)
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGUSR1))
	dump := waitForDump(t, dir, capturing.stderr)

	// The dump holds the seconds from about 3:00 to 5:00, read back whole.
	_, recs := readAll(t, dump)
	var seconds []int
	for _, r := range recs {
		if h, ok := r.(*trace.HTTP); ok {
			_, s, found := strings.Cut(h.Req.Target, "second=")
			require.True(t, found, h.Req.Target)
			n, err := strconv.Atoi(s)
			require.NoError(t, err)
			seconds = append(seconds, n)
			assert.LessOrEqual(t, r.Time(), 2*time.Minute+time.Second, "times count from the window's start")
		}
	}
	require.NotEmpty(t, seconds)
	first, last := slices.Min(seconds), slices.Max(seconds)
	t.Logf("SIGUSR1 at second %d; the dump holds %d requests from second %d to %d", signalled, len(seconds), first, last)
	assert.InDelta(t, signalled-120, first, 5, "the last 2 minutes, not more")
	assert.InDelta(t, signalled, last, 5, "up to the signal")

	<-stream
	r := capturing.Stop()
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "wrote "+out)
	_, recs = readAll(t, out)
	assert.NotEmpty(t, recs)
	_, err := os.Stat(out + ".ring")
	assert.ErrorIs(t, err, os.ErrNotExist, "a clean stop removes the segments")
}

// At the end of a pcap, the flight recorder writes the last window of it.
func TestFlightRecorderOnAPcap(t *testing.T) {
	pcap, port := recordPcap(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "ring.trace")
	r := hubreplay(t, nil, "capture", "--pcap", pcap, "--port", strconv.Itoa(port), "--ring", "10m", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `wrote .*ring.trace: \d+ records, the last 10m0s of a capture of \d+ packets .*: 15 HTTP exchanges, 23 WebSocket frames`, r.stderr)
	_, recs := readAll(t, out)
	assert.Equal(t, 15, count[*trace.HTTP](recs), "a capture shorter than the window is kept whole")
	_, err := os.Stat(out + ".ring")
	assert.ErrorIs(t, err, os.ErrNotExist)

	r = hubreplay(t, nil, "capture", "--pcap", pcap, "--port", strconv.Itoa(port), "--ring", "10m", "-o", out)
	assert.Equal(t, 2, r.code, "an existing -o is refused before the recording starts")
	assert.Contains(t, r.stderr, "--force")
	r = hubreplay(t, nil, "capture", "--pcap", pcap, "--ring", "10m", "--max-size", "1GB", "-o", filepath.Join(dir, "x.trace"))
	assert.Equal(t, 2, r.code)
}

// The flight recorder writes out what preceded a local proxy's crash: a
// watched process that exits (here killed, as the OOM killer would) is a
// trigger, like SIGUSR1.
func TestFlightRecorderWatchesTheProxy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture needs root or CAP_NET_RAW; CI runs as root")
	}
	addr, port := testenv.Serve(t)
	const marker = "flight-recorder-watched-proxy-5c1e"
	proxy := markedProcess(t, marker)
	dir := t.TempDir()
	out := filepath.Join(dir, "lecture.trace")
	capturing := background(t, nil, "capture", "--iface", "lo", "--port", strconv.Itoa(port), "--ring", "10m", "--watch", marker, "-o", out)
	time.Sleep(500 * time.Millisecond)
	testenv.Drive(t, addr, true)
	time.Sleep(1500 * time.Millisecond) // the trace's last frame is flushed within a second
	require.NoError(t, proxy.Process.Kill())
	_ = proxy.Wait()
	dump := waitForDump(t, dir, capturing.stderr)
	assert.Contains(t, capturing.stderr.String(), fmt.Sprintf("the watched pid %d (sh -c sleep 120; : %s) exited", proxy.Process.Pid, marker))
	_, recs := readAll(t, dump)
	assert.Equal(t, 15, count[*trace.HTTP](recs), "the traffic before the crash")
	r := capturing.Stop()
	require.Equal(t, 0, r.code, r.stderr)
}
