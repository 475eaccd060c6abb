package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/internal/testenv"
)

func TestProxyRun(t *testing.T) {
	testenv.Need(t, "node")
	spec := `cmd:node -e "require('http').createServer((q,r)=>r.end('ok')).listen({port},'127.0.0.1')"`
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"proxy", "run", spec, "--sample-every", "100ms"}, strings.NewReader(""), pw, &stderr)
		pw.Close()
		done <- code
	}()
	sc := bufio.NewScanner(pr)
	require.True(t, sc.Scan(), "a sample line")
	assert.Regexp(t, `^\d\d:\d\d:\d\d  pid \d+  rss [\d.]+ MB  cpu [\d.]+s  fds \d+`, sc.Text())
	cancel()
	for sc.Scan() {
	}
	assert.Equal(t, 0, <-done)
	assert.Regexp(t, `is up: proxy http://127.0.0.1:\d+`, stderr.String())
	assert.Contains(t, stderr.String(), "stopped by hubreplay")

	for _, args := range [][]string{{"proxy", "run"}, {"proxy", "run", "nginx"}, {"proxy", "run", "chp@4.5.6", "--memory-limit", "lots"}, {"proxy", "run", "chp@4.5.6", "--limit-by", "magic"}} {
		r := hubreplay(t, nil, args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
	}
}
