package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
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

// recordPcap records the JupyterHub-like workload with tcpdump.
func recordPcap(t *testing.T) (string, int) {
	t.Helper()
	addr, port := testenv.Serve(t)
	d := testenv.Tcpdump(t, filepath.Join(t.TempDir(), "peak.pcap"), fmt.Sprintf("tcp port %d", port))
	testenv.Drive(t, addr, true)
	d.Stop(t)
	return d.Path, port
}

func readAll(t *testing.T, path string) (*trace.Header, []trace.Record) {
	t.Helper()
	r, err := trace.Open(path)
	require.NoError(t, err)
	defer r.Close()
	var recs []trace.Record
	require.NoError(t, r.Each(context.Background(), nil, func(rec trace.Record) error { recs = append(recs, rec); return nil }), "the trace is whole")
	return r.Header(), recs
}

func TestCaptureAndVerify(t *testing.T) {
	pcap, port := recordPcap(t)
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets.txt")
	require.NoError(t, os.WriteFile(secrets, []byte("# what the test client sent\n"+strings.Join(testenv.WireSecrets, "\n")+"\n"), 0o600))
	out := filepath.Join(dir, "peak.trace")
	p := strconv.Itoa(port)

	r := hubreplay(t, nil, "capture", "--pcap", pcap, "--port", p, "-o", out, "--note", "test peak")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `wrote .*peak.trace: \d+ records from \d+ packets over .*: 15 HTTP exchanges, 23 WebSocket frames, 0 route events, 0 gaps`, r.stderr)
	h, recs := readAll(t, out)
	assert.Equal(t, "pcap", h.Source, "the capture file's name (operators name it after the hub) is not kept")
	assert.Equal(t, "test peak", h.Note)
	assert.Equal(t, "hmac-sha256/v2", h.Anon.Scheme)
	assert.False(t, h.Anon.Raw)
	assert.IsType(t, &trace.Stats{}, recs[len(recs)-1], "the capture's counters close the trace")

	r = hubreplay(t, nil, "verify", out, "--secrets", secrets)
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "no secrets found in")

	// Captured raw, the same traffic fails verification, loudly.
	raw := filepath.Join(dir, "raw.trace")
	r = hubreplay(t, nil, "capture", "--pcap", pcap, "--port", p, "-o", raw, "--raw")
	require.Equal(t, 0, r.code, r.stderr)

	// Spread over more workers than connections, or on one, the same records.
	_, want := readAll(t, raw)
	for _, n := range []string{"1", "5"} {
		spread := filepath.Join(dir, "raw-"+n+".trace")
		r = hubreplay(t, nil, "capture", "--pcap", pcap, "--port", p, "-o", spread, "--raw", "--workers", n)
		require.Equal(t, 0, r.code, r.stderr)
		_, got := readAll(t, spread)
		assert.Equal(t, want, got, "--workers %s", n)
	}
	assert.Contains(t, r.stderr, "WARNING: --raw")
	h, _ = readAll(t, raw)
	assert.True(t, h.Anon.Raw)
	r = hubreplay(t, nil, "verify", raw, "--secrets", secrets, "--show", "3")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "listed secret")
	assert.Contains(t, r.stdout, "... and ")
	assert.Contains(t, r.stdout, "captured with --raw")
	for _, s := range testenv.WireSecrets[:4] {
		assert.NotContains(t, r.stdout, s, "verify does not print the secrets it finds")
	}
	r = hubreplay(t, nil, "verify", raw, "--secrets", secrets, "--show", "all")
	assert.Equal(t, 1, r.code)
	assert.NotContains(t, r.stdout, "... and ", "--show all prints every finding")
	m := regexp.MustCompile(`: (\d+) findings in`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	assert.Equal(t, m[1], strconv.Itoa(strings.Count(r.stdout, "\nrecord ")+1), "one line per finding, and their count")
	r = hubreplay(t, nil, "verify", raw, "--show", "some")
	assert.Equal(t, 2, r.code, "a usage error")

	// The operator may name the source; the trace then says that.
	named := filepath.Join(dir, "named.trace")
	r = hubreplay(t, nil, "capture", "--pcap", pcap, "--port", p, "-o", named, "--source-name", "monday lecture")
	require.Equal(t, 0, r.code, r.stderr)
	h, _ = readAll(t, named)
	assert.Equal(t, "monday lecture", h.Source)

	// The same key gives the same pseudonyms in two captures.
	key := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(key, []byte("a key of more than sixteen bytes\n"), 0o600))
	users := map[string]bool{}
	for i := range 2 {
		o := filepath.Join(dir, fmt.Sprintf("keyed%d.trace", i))
		r = hubreplay(t, nil, "capture", "--pcap", pcap, "--port", p, "-o", o, "--anon-key-file", key)
		require.Equal(t, 0, r.code, r.stderr)
		_, recs := readAll(t, o)
		for _, rec := range recs {
			if h, ok := rec.(*trace.HTTP); ok && h.User != "" {
				users[h.User] = true
			}
		}
	}
	assert.Len(t, users, 1, "one user, one pseudonym, across captures: %v", users)

	// Nothing is overwritten by accident.
	r = hubreplay(t, nil, "capture", "--pcap", pcap, "--port", p, "-o", out)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "exists")
}

func TestCaptureBadInput(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.pcap")
	require.NoError(t, os.WriteFile(text, []byte("these are my notes, not packets\n"), 0o600))
	out := filepath.Join(dir, "x.trace")
	r := hubreplay(t, nil, "capture", "--pcap", text, "-o", out)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "notes.pcap is not a pcap or pcapng file")
	r = hubreplay(t, nil, "capture", "--pcap", dir, "-o", filepath.Join(dir, "z.trace"))
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "is a directory, not a capture file")
	r = hubreplay(t, nil, "capture", "--pcap", text, "-o", out, "--workers", "-2")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "--workers -2")
	assert.Equal(t, 1, strings.Count(r.stderr, "\n"), r.stderr)
	_, err := os.Stat(out)
	assert.True(t, os.IsNotExist(err), "no trace is made from a file that is not a capture")

	// A capture cut off in the middle of a packet: what came before it is kept.
	pcap, port := recordPcap(t)
	b, err := os.ReadFile(pcap)
	require.NoError(t, err)
	cut := filepath.Join(dir, "cut.pcap")
	require.NoError(t, os.WriteFile(cut, b[:len(b)*2/3], 0o600))
	r = hubreplay(t, nil, "capture", "--pcap", cut, "--port", strconv.Itoa(port), "-o", out)
	assert.Equal(t, 2, r.code)
	assert.Regexp(t, `cut.pcap is truncated inside packet \d+`, r.stderr)
	_, recs := readAll(t, out)
	assert.Greater(t, len(recs), 10, "the records before the cut are in the trace")

	key := filepath.Join(dir, "short.key")
	require.NoError(t, os.WriteFile(key, []byte("short"), 0o600))
	r = hubreplay(t, nil, "capture", "--pcap", pcap, "-o", filepath.Join(dir, "y.trace"), "--anon-key-file", key)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "at least 16")

	for _, args := range [][]string{
		{"capture", "-o", out},
		{"capture", "--pcap", pcap},
		{"capture", "--pcap", pcap, "--iface", "lo", "-o", out},
		{"capture", "--pcap", pcap, "-o", out, "--raw", "--anon-key-file", key},
		{"capture", "--pcap", pcap, "-o", out, "--max-size", "lots"},
		{"verify"},
	} {
		r := hubreplay(t, nil, args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
	}
}

// A live capture stops cleanly on Ctrl-C (the context main cancels on
// SIGINT and SIGTERM), on --max-duration and on --max-size, and leaves a
// whole trace each time.
func TestLiveCaptureStops(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture needs root or CAP_NET_RAW; CI runs as root")
	}
	addr, port := testenv.Serve(t)
	dir := t.TempDir()
	p := strconv.Itoa(port)

	for _, iface := range []string{"lo", "any"} {
		t.Run("interrupted on "+iface, func(t *testing.T) {
			out := filepath.Join(dir, iface+".trace")
			capturing := background(t, nil, "capture", "--iface", iface, "--port", p, "-o", out)
			time.Sleep(300 * time.Millisecond)
			testenv.Drive(t, addr, true)
			time.Sleep(300 * time.Millisecond)
			r := capturing.Stop()
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stderr, "(interrupted)")
			// Each once: on any, lo's packets are seen leaving and arriving.
			assert.Contains(t, r.stderr, "15 HTTP exchanges, 23 WebSocket frames, 0 route events, 0 gaps")
			assert.NotContains(t, r.stderr, "packets were dropped")
			h, recs := readAll(t, out)
			assert.Equal(t, "iface:"+iface, h.Source)
			assert.IsType(t, &trace.Stats{}, recs[len(recs)-1])
		})
	}
	// Wall-clock time: no packet comes to end it.
	t.Run("max-duration on an idle port", func(t *testing.T) {
		r := hubreplay(t, nil, "capture", "--iface", "lo", "--port", p, "-o", filepath.Join(dir, "d.trace"), "--max-duration", "300ms")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, "(--max-duration reached)")
	})
	t.Run("max-size", func(t *testing.T) {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
					if resp, err := http.Get("http://" + addr + "/user/x/api/contents?size=4000"); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}
		}()
		r := hubreplay(t, nil, "capture", "--iface", "lo", "--port", p, "-o", filepath.Join(dir, "s.trace"), "--max-size", "2KB")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, "(--max-size 2KB reached)")
	})
	t.Run("bad buffer size", func(t *testing.T) {
		r := hubreplay(t, nil, "capture", "--iface", "lo", "--port", p, "-o", filepath.Join(dir, "b.trace"), "--buffer-size", "lots")
		assert.Equal(t, 2, r.code)
		assert.Contains(t, r.stderr, "--buffer-size")
	})
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "1048576": 1 << 20, "500MB": 500e6, "2GiB": 2 << 30, "64KiB": 64 << 10,
		// Kubernetes' spelling, as z2jh's values use it: Gi binary, G decimal.
		"1Gi": 1 << 30, "512Mi": 512 << 20, "1G": 1e9, "1.5G": 1.5e9, "500M": 500e6, "64k": 64e3, "2T": 2e12} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"lots", "-5MB", "MB", "64Mx", "1 Gig"} {
		_, err := parseSize(bad)
		assert.Error(t, err, bad)
	}
}

// verify finds a name as JupyterHub keeps it (lower-cased) though it was
// listed as typed at login, and a surname that survived alone.
func TestVerifyFindsNamesAndTheirParts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "names.trace")
	w, err := trace.Create(path, trace.Header{Format: trace.FormatName, Version: trace.Version, Start: time.Now().UTC(), Source: "test"}, nil)
	require.NoError(t, err)
	require.NoError(t, w.Write(&trace.HTTP{TS: 1, Conn: 1, Req: trace.Request{Method: "GET", Target: "/user/hevej.gisiso/lab"}}))
	require.NoError(t, w.Write(&trace.Route{TS: 2, Op: trace.RouteAdd, Path: "/user/p-91a9e6ec.ramivop/"}))
	require.NoError(t, w.Close())
	list := filepath.Join(dir, "students.txt")
	require.NoError(t, os.WriteFile(list, []byte("Hevej.Gisiso\nRuruc Ramivop\n"), 0o600))
	r := hubreplay(t, nil, "verify", path, "--secrets", list, "--show", "all")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "record 2 (http) req.target: listed secret 1:")
	assert.Contains(t, r.stdout, "record 3 (route) path: part of listed secret 2 (7 characters):")
	assert.NotContains(t, r.stdout, "ramivop")
	assert.Contains(t, r.stdout, "2 findings in 3 records")
}
