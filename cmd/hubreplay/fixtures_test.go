package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

func TestGenerateLecturePeak(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.trace"), filepath.Join(dir, "b.trace")
	for _, out := range []string{a, b} {
		r := hubreplay(t, nil, "generate", "lecture-peak", "--users", "20", "--duration", "6m", "--seed", "5", "-o", out)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, "20 students over 6m0s (seed 5)")
	}
	ab, err := os.ReadFile(a)
	require.NoError(t, err)
	bb, err := os.ReadFile(b)
	require.NoError(t, err)
	assert.Equal(t, ab, bb, "same seed, same file")

	r := hubreplay(t, nil, "inspect", "--json", a)
	require.Equal(t, 0, r.code, r.stderr)
	var s trace.Summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &s))
	assert.Len(t, s.Users, 20)
	assert.Equal(t, uint64(20), s.Routes.Added)
	assert.GreaterOrEqual(t, s.Conns.Peak, 40)

	for _, args := range [][]string{
		{"generate", "lecture-peak"},
		{"generate", "lecture-peak", "-o", filepath.Join(dir, "c"), "--users", "0"},
		{"generate", "lecture-peak", "-o", filepath.Join(dir, "c"), "--duration", "1m"},
	} {
		r := hubreplay(t, nil, args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
	}
	r = hubreplay(t, nil, "generate", "lecture-peak", "--users", "3", "-o", a)
	assert.Equal(t, 2, r.code, "an existing file is not replaced without --force")
}

// firstExchange finds the record number of the first exchange whose
// target starts with prefix.
func firstExchange(t *testing.T, path, prefix string) (int64, *trace.HTTP) {
	t.Helper()
	r, err := trace.Open(path)
	require.NoError(t, err)
	defer r.Close()
	var n, found int64
	var ex *trace.HTTP
	require.NoError(t, r.Each(context.Background(), nil, func(rec trace.Record) error {
		n++
		if h, ok := rec.(*trace.HTTP); ok && found == 0 && strings.HasPrefix(h.Req.Target, prefix) {
			found, ex = n, h
		}
		return nil
	}))
	require.NotZero(t, found, "no exchange under %s", prefix)
	return found, ex
}

func TestFixturesServe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peak.trace")
	r := hubreplay(t, nil, "generate", "lecture-peak", "--users", "10", "--duration", "5m", "-o", path)
	require.Equal(t, 0, r.code, r.stderr)
	num, ex := firstExchange(t, path, "/hub/login")

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"fixtures", "serve", "--trace", path, "--speed", "100", "--hub-listen", "127.0.0.1:0"}, strings.NewReader(""), pw, io.Discard)
		pw.Close()
		done <- code
	}()
	lines := bufio.NewScanner(pr)
	require.True(t, lines.Scan())
	hub, ok := strings.CutPrefix(lines.Text(), "hub stub (the proxy's --default-target): ")
	require.True(t, ok, lines.Text())
	require.True(t, lines.Scan())
	assert.Contains(t, lines.Text(), "user-server emulators: 10")

	req, _ := http.NewRequest("GET", hub+ex.Req.Target, nil)
	req.Header.Set("X-Hubreplay-Record", strconv.FormatInt(num, 10))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, ex.Resp.Status, resp.StatusCode)
	assert.Equal(t, ex.Resp.BodySize, n)

	cancel()
	var rest strings.Builder
	for lines.Scan() {
		rest.WriteString(lines.Text() + "\n")
	}
	assert.Equal(t, 0, <-done)
	assert.Contains(t, rest.String(), "answered 1 requests from the trace")

	t.Setenv("CONFIGPROXY_AUTH_TOKEN", "")
	r = hubreplay(t, nil, "fixtures", "serve", "--trace", path, "--api", "http://127.0.0.1:1")
	assert.Equal(t, 2, r.code, "driving routes needs the token: %s", r.stderr)
}
