package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

// startCHP starts CHP on free loopback ports with a hub port (free, for
// the fixtures to take) as its default target, and puts its token where
// replay reads it.
func startCHP(t *testing.T, bin, token string) (hub, public, api int) {
	t.Helper()
	hub, public, api = testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	cmd := testenv.Start(t, "node", []string{"CONFIGPROXY_AUTH_TOKEN=" + token}, bin,
		"--ip", "127.0.0.1", "--port", strconv.Itoa(public), "--api-ip", "127.0.0.1", "--api-port", strconv.Itoa(api),
		"--default-target", fmt.Sprintf("http://127.0.0.1:%d", hub), "--log-level", "warn")
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	testenv.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", public), 20*time.Second)
	testenv.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", api), 20*time.Second)
	t.Setenv("CONFIGPROXY_AUTH_TOKEN", token)
	return hub, public, api
}

// The operator's path: a CHP started by hand with the hub stub's address
// as its default target; replay runs the fixtures, drives the routes and
// writes results; 'results' summarizes them.
func TestReplayCommandThroughCHP(t *testing.T) {
	bin := testenv.CHP(t, "5.3.0")
	dir := t.TempDir()
	tr := filepath.Join(dir, "peak.trace")
	r := hubreplay(t, nil, "generate", "lecture-peak", "--users", "8", "--duration", "5m", "-o", tr)
	require.Equal(t, 0, r.code, r.stderr)

	hub, public, api := startCHP(t, bin, "replay-cli-token-1")
	out := filepath.Join(dir, "peak.results")
	r = hubreplay(t, nil, "replay", "--trace", tr, "--target", fmt.Sprintf("http://127.0.0.1:%d", public),
		"--api", fmt.Sprintf("http://127.0.0.1:%d", api), "--hub-listen", fmt.Sprintf("127.0.0.1:%d", hub),
		"--speed", "30", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "replaying "+tr)
	assert.Contains(t, r.stdout, "0 failed")
	assert.Contains(t, r.stdout, "results\t"+out)

	r = hubreplay(t, nil, "results", "--json", out)
	require.Equal(t, 0, r.code, r.stderr)
	var sum replay.Summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum))
	assert.Positive(t, sum.Requests)
	assert.Equal(t, sum.Requests, sum.OK, "%v", sum.Errors)
	assert.Equal(t, sum.Sessions, sum.Connected)
	assert.Equal(t, sum.FramesExpected, sum.FramesMatched)
	assert.Equal(t, int64(sum.Requests), sum.Percentiles[replay.HistSendError].Count)

	r = hubreplay(t, nil, "results", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "send error")

	r = hubreplay(t, nil, "replay", "--trace", tr, "--target", fmt.Sprintf("http://127.0.0.1:%d", public),
		"--api", fmt.Sprintf("http://127.0.0.1:%d", api), "-o", out)
	assert.Equal(t, 2, r.code, "results are not overwritten without --force")
	assert.Contains(t, r.stderr, "already exists (give --force to replace it")
}

func TestReplayCommandUsage(t *testing.T) {
	t.Setenv("CONFIGPROXY_AUTH_TOKEN", "")
	tr, _, _ := sampleFile(t)
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"replay", "--target", "http://127.0.0.1:1"}, "--trace"},
		{[]string{"replay", "--trace", tr, "--target", "http://127.0.0.1:1"}, "--api"},
		{[]string{"replay", "--trace", tr, "--target", "http://127.0.0.1:1", "--api", "http://127.0.0.1:2"}, "CONFIGPROXY_AUTH_TOKEN"},
		{[]string{"replay", "--trace", tr, "--target", "http://127.0.0.1:1", "--fixtures=false", "--speed", "1000"}, "0.1 to 100"},
		{[]string{"replay", "--trace", tr, "--target", "http://127.0.0.1:1", "--fixtures=false", "--shard", "3/3"}, "0 ≤ i < N"},
		{[]string{"replay", "--trace", tr, "--target", "http://127.0.0.1:1", "--fixtures=false", "--users", "0"}, "1 to 1000"},
		{[]string{"replay", "--trace", tr, "--target", "http://127.0.0.1:1", "--fixtures=false", "--users", "many"}, "1 to 1000"},
		{[]string{"replay", "--trace", tr, "--target", "http://127.0.0.1:1", "--fixtures=false", "--from", "yesterday"}, "--from"},
	} {
		r := hubreplay(t, nil, c.args...)
		assert.Equal(t, 2, r.code, "%v: %s", c.args, r.stderr)
		assert.Contains(t, r.stderr, c.says, "%v", c.args)
	}
	r := hubreplay(t, nil, "results", tr)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "not a hubreplay results file")

	// Checked before the trace is read: nothing is left behind.
	dir := t.TempDir()
	out := filepath.Join(dir, "r.results")
	r = hubreplay(t, nil, "replay", "--trace", tr, "--target", "localhost:8000", "--fixtures=false", "-o", out)
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "give the proxy's URL")
	assert.NotContains(t, r.stderr, "replaying", "the trace was not read")
	assert.NoFileExists(t, out)
	file := filepath.Join(dir, "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	r = hubreplay(t, nil, "compare", "--trace", tr, "--a", "chp@4.5.6", "--b", "chp@5", "-o", file)
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "is a file, not a directory")
	cmpDir := filepath.Join(dir, "cmp")
	r = hubreplay(t, nil, "compare", "--trace", tr, "--a", "chp:"+filepath.Join(dir, "no-such-checkout"), "--b", "chp:"+filepath.Join(dir, "no-such-checkout"), "-o", cmpDir)
	assert.Equal(t, 2, r.code, r.stderr)
	assert.NoDirExists(t, cmpDir, "a candidate that cannot be had leaves no empty directory")
}

// Nothing listens at the target: every request is a refused connection,
// recorded as such, and the replay still ends with its results.
func TestReplayCommandTargetDown(t *testing.T) {
	tr, _, _ := sampleFile(t)
	out := filepath.Join(t.TempDir(), "down.results")
	port := testenv.FreePort(t)
	r := hubreplay(t, nil, "replay", "--trace", tr, "--target", fmt.Sprintf("http://127.0.0.1:%d", port), "--fixtures=false",
		"--speed", "max", "--duration", "20s", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	r = hubreplay(t, nil, "results", "--json", out)
	require.Equal(t, 0, r.code, r.stderr)
	var sum replay.Summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum))
	assert.Positive(t, sum.Requests)
	assert.Equal(t, sum.Requests, sum.Errors[replay.ErrConnectRefused]+sum.Errors[replay.ErrCancelled])
	assert.Positive(t, sum.Errors[replay.ErrConnectRefused])
}

// The multi-process way (as kind's Job pods do it): 'fixtures serve' drives
// the routes, two replay shards run with --fixtures=false, all from the
// same --start-at; the merged results hold every request once, answered as
// recorded.
func TestShardedReplayWithSeparateFixtures(t *testing.T) {
	bin := testenv.CHP(t, "4.5.6")
	dir := t.TempDir()
	tr := filepath.Join(dir, "peak.trace")
	r := hubreplay(t, nil, "generate", "lecture-peak", "--users", "10", "--duration", "5m", "-o", tr)
	require.Equal(t, 0, r.code, r.stderr)

	hub, public, api := startCHP(t, bin, "replay-shard-token-1")

	startAt := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339Nano)
	common := []string{"--trace", tr, "--speed", "20", "--users", "2x", "--jitter", "30s", "--seed", "7", "--start-at", startAt}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		code := run(ctx, append([]string{"fixtures", "serve", "--api", fmt.Sprintf("http://127.0.0.1:%d", api), "--hub-listen", fmt.Sprintf("127.0.0.1:%d", hub)}, common...),
			strings.NewReader(""), &out, &errb)
		served <- result{code: code, stdout: out.String(), stderr: errb.String()}
	}()
	var wg sync.WaitGroup
	shards := make([]result, 2)
	files := make([]string, 2)
	for i := range 2 {
		files[i] = filepath.Join(dir, fmt.Sprintf("shard%d.results", i))
		wg.Go(func() {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"replay", "--target", fmt.Sprintf("http://127.0.0.1:%d", public), "--fixtures=false",
				"--shard", fmt.Sprintf("%d/2", i), "-o", files[i]}, common...), strings.NewReader(""), &out, &errb)
			shards[i] = result{code: code, stdout: out.String(), stderr: errb.String()}
		})
	}
	wg.Wait()
	stop()
	fs := <-served
	require.Equal(t, 0, fs.code, fs.stderr)
	for i, s := range shards {
		require.Equal(t, 0, s.code, "shard %d: %s", i, s.stderr)
	}
	assert.Contains(t, fs.stdout, "driving routes")

	merged := filepath.Join(dir, "all.results")
	r = hubreplay(t, nil, "results", "merge", "-o", merged, files[0], files[1])
	require.Equal(t, 0, r.code, r.stderr)
	r = hubreplay(t, nil, "results", "--json", merged)
	require.Equal(t, 0, r.code, r.stderr)
	var sum replay.Summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sum))
	whole := hubreplay(t, nil, "inspect", "--json", tr)
	var ts trace.Summary
	require.NoError(t, json.Unmarshal([]byte(whole.stdout), &ts))
	assert.EqualValues(t, 2*ts.HTTP.Exchanges, sum.Requests, "both shards together: every request of both copies of every user")
	if !assert.Equal(t, sum.Requests, sum.OK, "%v", sum.Errors) {
		res, err := replay.ReadResults(context.Background(), merged)
		require.NoError(t, err)
		for _, q := range res.Requests {
			if q.Error != "" {
				t.Logf("%s %s due %s sent %s: %s %s", q.Method, q.Target, q.TS, q.Sent, q.Error, q.Detail)
			}
		}
	}
	assert.Equal(t, sum.FramesExpected, sum.FramesMatched)
}

// Ctrl-C mid-replay: exit 2 (no answer) saying so, and a results file that is whole
// (end marker, end record) with everything replayed so far.
func TestReplayCommandInterrupted(t *testing.T) {
	tr, _, _ := sampleFile(t)
	out := filepath.Join(t.TempDir(), "cut.results")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"replay", "--trace", tr, "--target", fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)),
		"--fixtures=false", "--speed", "50", "-o", out}, strings.NewReader(""), &stdout, &stderr)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr.String(), "replay interrupted; what was replayed is in "+out)
	res, err := replay.ReadResults(context.Background(), out)
	require.NoError(t, err, "the results file was closed properly")
	require.Len(t, res.Ends, 1)
	assert.True(t, res.Ends[0].Cancelled)
	assert.NotEmpty(t, res.Requests, "what was sent before the interrupt is kept")
}

// A results file cut short still shows what it holds, then says where it
// breaks, with exit status 2.
func TestResultsCommandDamaged(t *testing.T) {
	tr, _, _ := sampleFile(t)
	out := filepath.Join(t.TempDir(), "r.results")
	r := hubreplay(t, nil, "replay", "--trace", tr, "--target", fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), "--fixtures=false",
		"--speed", "max", "--duration", "3s", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	cut := filepath.Join(t.TempDir(), "cut.results")
	require.NoError(t, os.WriteFile(cut, b[:len(b)-40], 0o644))
	r = hubreplay(t, nil, "results", cut)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stdout, "requests")
	assert.Contains(t, r.stderr, "truncated")
	assert.Contains(t, r.stderr, cut)
}

// The whole path: a JupyterHub-like session through CHP 4.5.6 recorded by
// tcpdump, captured (anonymized) into a trace, and replayed through CHP
// 5.3.0 with the fixtures: every captured request and frame is answered
// as recorded.
func TestCaptureThenReplay(t *testing.T) {
	old, next := testenv.CHP(t, "4.5.6"), testenv.CHP(t, "5.3.0")
	backend, _ := testenv.Serve(t)
	public, api := testenv.FreePort(t), testenv.FreePort(t)
	const token = "capture-then-replay-1"
	proc := testenv.Start(t, "node", []string{"CONFIGPROXY_AUTH_TOKEN=" + token}, old,
		"--ip", "127.0.0.1", "--port", strconv.Itoa(public), "--api-ip", "127.0.0.1", "--api-port", strconv.Itoa(api),
		"--default-target", "http://"+backend, "--log-level", "warn")
	t.Cleanup(func() { _ = proc.Process.Signal(syscall.SIGKILL) })
	testenv.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", api), 20*time.Second)
	testenv.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", public), 20*time.Second)

	dir := t.TempDir()
	dump := testenv.Tcpdump(t, filepath.Join(dir, "lecture.pcap"), fmt.Sprintf("tcp port %d or tcp port %d", public, api))
	routes := func(method, body string) {
		req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d/api/routes/user/%s", api, testenv.User), strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "token "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Less(t, resp.StatusCode, 300)
	}
	routes("POST", fmt.Sprintf(`{"target":"http://%s","user":%q,"server_name":""}`, backend, testenv.User))
	testenv.Drive(t, fmt.Sprintf("127.0.0.1:%d", public), false)
	routes("DELETE", "")
	dump.Stop(t)

	tr := filepath.Join(dir, "lecture.trace")
	r := hubreplay(t, nil, "capture", "--pcap", dump.Path, "--port", strconv.Itoa(public), "--api-port", strconv.Itoa(api), "-o", tr)
	require.Equal(t, 0, r.code, r.stderr)
	r = hubreplay(t, nil, "inspect", "--json", tr)
	require.Equal(t, 0, r.code, r.stderr)
	var ts trace.Summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ts))
	require.Positive(t, ts.HTTP.Exchanges)

	hub, public2, api2 := startCHP(t, next, "capture-then-replay-2")
	out := filepath.Join(dir, "lecture.results")
	r = hubreplay(t, nil, "replay", "--trace", tr, "--target", fmt.Sprintf("http://127.0.0.1:%d", public2),
		"--api", fmt.Sprintf("http://127.0.0.1:%d", api2), "--hub-listen", fmt.Sprintf("127.0.0.1:%d", hub), "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	res, err := replay.ReadResults(context.Background(), out)
	require.NoError(t, err)
	assert.EqualValues(t, ts.HTTP.Exchanges, len(res.Requests), "every captured request was replayed")
	for _, q := range res.Requests {
		assert.Empty(t, q.Error, "%s %s: %s", q.Method, q.Target, q.Detail)
		assert.Equal(t, q.Want, q.Status, "%s %s", q.Method, q.Target)
	}
	require.Len(t, res.Sessions, 1, "the kernel WebSocket")
	ses := res.Sessions[0]
	t.Logf("captured %d exchanges, replayed %d requests; session: %+v", ts.HTTP.Exchanges, len(res.Requests), *ses)
	assert.True(t, ses.Connected)
	assert.Empty(t, ses.Error, ses.Detail)
	assert.Equal(t, ses.Want, ses.Sent)
	assert.Equal(t, ses.WantReceived, ses.Matched, "the server's frames, in order, as captured")
	assert.Equal(t, ses.WantClose, ses.Close)
}

// Off a terminal (CI logs), progress is a plain line every 10 s saying
// where in the trace the replay is, its rate, failures and open connections.
func TestReplayProgressLines(t *testing.T) {
	var buf bytes.Buffer
	d := newReplayDisplay(&buf)
	p := replay.Progress{Elapsed: 30 * time.Second, Position: 2 * time.Minute, Length: 10 * time.Minute, Done: 3000, Failed: 12, Open: 40, OpenWS: 25, Frames: 900}
	d.update(p)
	assert.Empty(t, buf.String(), "not before 10 s")
	d.last = time.Now().Add(-11 * time.Second)
	d.update(p)
	line := buf.String()
	assert.Equal(t, 1, strings.Count(line, "\n"), "one plain line, no terminal codes: %q", line)
	assert.NotContains(t, line, "\r")
	for _, want := range []string{"trace 2m0s / 10m0s", "req/s", "3000 requests", "12 failed", "40 connections open", "25 WebSockets"} {
		assert.Contains(t, line, want)
	}
}
