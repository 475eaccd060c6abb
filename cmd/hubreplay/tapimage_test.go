package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tap image's binary (go build -tags tapimage, as Dockerfile.tap and
// make tap-binary build it) carries capture into production pods without
// the cluster clients, and is a fraction of the CLI's size; the sizes are
// logged for the README.
func TestTapImageBinary(t *testing.T) {
	deps, err := exec.Command("go", "list", "-deps", "-tags", "tapimage", ".").Output()
	require.NoError(t, err)
	for _, heavy := range []string{"k8s.io/client-go", "sigs.k8s.io/kind", "github.com/docker/docker", "github.com/testcontainers"} {
		assert.NotContains(t, string(deps), heavy+"/", "the tap binary must not carry %s into production pods", heavy)
	}
	dir := t.TempDir()
	size := func(name string, tags ...string) int64 {
		out := filepath.Join(dir, name)
		args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", out}, tags...)
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, string(b))
		st, err := os.Stat(out)
		require.NoError(t, err)
		return st.Size()
	}
	tapSize, cliSize := size("hubreplay-tap", "-tags", "tapimage"), size("hubreplay")
	t.Logf("stripped, static: tap binary %.1f MB, CLI %.1f MB", float64(tapSize)/1e6, float64(cliSize)/1e6)
	assert.Less(t, tapSize*3, cliSize, "a small image for the tap")

	out, err := exec.Command(filepath.Join(dir, "hubreplay-tap"), "--help").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "capture")
	assert.NotRegexp(t, `(?m)^\s+compare\s`, string(out), "capture only: no compare verb")
	assert.Regexp(t, `(?m)^\s+capture\s`, string(out))
}
