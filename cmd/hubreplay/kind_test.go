package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/hubreplay/hubreplay/proxy"
)

// Without a Docker engine every kind verb says so in one line, exit 1.
func TestKindWithoutEngine(t *testing.T) {
	if _, ok := proxy.DockerEngine(); ok {
		t.Skip("a Docker engine runs here; kindcluster's lifecycle test covers it")
	}
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "docker.sock"))
	for _, verb := range [][]string{{"kind", "up", "--workdir", t.TempDir()}, {"kind", "status"}, {"kind", "down"}, {"kind", "image", "--src", "../.."}} {
		r := hubreplay(t, nil, verb...)
		assert.Equal(t, 1, r.code, "%v: %s", verb, r.stderr)
		errLines := errorLines(r.stderr)
		if assert.Len(t, errLines, 1, "one error line: %q", r.stderr) {
			assert.Contains(t, errLines[0], "no Docker engine answers", verb)
		}
	}
	r := hubreplay(t, nil, "kind", "image", "--tag", "nocolon")
	assert.Equal(t, 2, r.code)
}

func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "hubreplay: ") {
			out = append(out, l)
		}
	}
	return out
}
