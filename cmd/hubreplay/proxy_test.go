package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
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
	var stderr testenv.Buffer // read while the command still writes
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

	// The operator's token from the environment, as CHP takes it: the
	// candidate gets it (this one answers with it), and it is not printed.
	t.Setenv("CONFIGPROXY_AUTH_TOKEN", "t0ken-from-the-shell")
	spec = `cmd:node -e "require('http').createServer((q,r)=>r.end(process.env.CONFIGPROXY_AUTH_TOKEN)).listen({port},'127.0.0.1')"`
	ctx, cancel = context.WithCancel(context.Background())
	pr, pw = io.Pipe()
	stderr.Reset()
	go func() {
		code := run(ctx, []string{"proxy", "run", spec, "--sample-every", "100ms"}, strings.NewReader(""), pw, &stderr)
		pw.Close()
		done <- code
	}()
	sc = bufio.NewScanner(pr)
	require.True(t, sc.Scan(), "a sample line")
	url := regexp.MustCompile(`proxy (http://127.0.0.1:\d+)`).FindStringSubmatch(stderr.String())
	require.Len(t, url, 2, stderr.String())
	resp, err := http.Get(url[1])
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "t0ken-from-the-shell", string(body))
	cancel()
	for sc.Scan() {
	}
	assert.Equal(t, 0, <-done)
	assert.Contains(t, stderr.String(), "its token from CONFIGPROXY_AUTH_TOKEN")
	assert.NotContains(t, stderr.String(), "t0ken-from-the-shell")

	for _, args := range [][]string{{"proxy", "run"}, {"proxy", "run", "nginx"}, {"proxy", "run", "chp@4.5.6", "--memory-limit", "lots"}, {"proxy", "run", "chp@4.5.6", "--limit-by", "magic"}} {
		r := hubreplay(t, nil, args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
	}
}
