package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func events(t *testing.T, es ...event) string {
	var b strings.Builder
	for _, e := range es {
		j, err := json.Marshal(e)
		require.NoError(t, err)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// A run with a pass, a failure drowned in output, skips with reasons and
// a package that did not build: a line per package, the failure's last
// lines, every skip with its reason, status 1.
func TestSummary(t *testing.T) {
	const a, b, c = "github.com/hubreplay/hubreplay/a", "github.com/hubreplay/hubreplay/b", "github.com/hubreplay/hubreplay/c"
	es := []event{
		{Action: "run", Package: a, Test: "TestOK"},
		{Action: "output", Package: a, Test: "TestOK", Output: "=== RUN   TestOK\n"},
		{Action: "pass", Package: a, Test: "TestOK"},
		{Action: "run", Package: a, Test: "TestNeedsDocker"},
		{Action: "output", Package: a, Test: "TestNeedsDocker", Output: "=== RUN   TestNeedsDocker\n"},
		{Action: "output", Package: a, Test: "TestNeedsDocker", Output: "    kind_test.go:78: no Docker engine answers at unix:///var/run/docker.sock\n"},
		{Action: "output", Package: a, Test: "TestNeedsDocker", Output: "--- SKIP: TestNeedsDocker (0.00s)\n"},
		{Action: "skip", Package: a, Test: "TestNeedsDocker"},
		{Action: "pass", Package: a, Elapsed: 1.5},
		{Action: "run", Package: b, Test: "TestLoud"},
	}
	for i := range 100 {
		es = append(es, event{Action: "output", Package: b, Test: "TestLoud", Output: fmt.Sprintf("line %d\n", i)})
	}
	es = append(es,
		event{Action: "output", Package: b, Test: "TestLoud", Output: "    x_test.go:9: expected 1, got 2\n"},
		event{Action: "fail", Package: b, Test: "TestLoud"},
		event{Action: "output", Package: b, Output: "FAIL\n"},
		event{Action: "fail", Package: b, Elapsed: 2},
		event{Action: "skip", Package: c},
	)
	in := "# github.com/hubreplay/hubreplay/d\nd/x.go:3:1: syntax error\n" + events(t, es...)
	var out, errOut bytes.Buffer
	code := run(strings.NewReader(in), &out, &errOut)
	s := out.String()
	assert.Equal(t, 1, code, s)
	assert.Contains(t, s, "d/x.go:3:1: syntax error", "what was not an event is passed on")
	assert.Contains(t, s, "ok  \t"+a+"\t1.5s")
	assert.Contains(t, s, "FAIL\t"+b+"\t2s")
	assert.Contains(t, s, "?   \t"+c+"\t[no test files]")
	assert.Contains(t, s, "--- FAIL: "+b+" TestLoud")
	assert.Contains(t, s, "expected 1, got 2")
	assert.Contains(t, s, "… 41 lines before these …")
	assert.NotContains(t, s, "line 0\n", "not every line of a loud failure")
	assert.Contains(t, s, "skipped: 1\n  a TestNeedsDocker: kind_test.go:78: no Docker engine answers at unix:///var/run/docker.sock")
	assert.Contains(t, s, "FAILED: 1 tests")

	out.Reset()
	code = run(strings.NewReader(events(t, event{Action: "pass", Package: a, Elapsed: 1})), &out, &errOut)
	assert.Equal(t, 0, code, out.String())
	assert.Contains(t, out.String(), "skipped: 0")
	assert.NotContains(t, out.String(), "FAILED")
}
