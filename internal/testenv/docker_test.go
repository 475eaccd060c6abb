package testenv

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The helper a Docker test would be: it has no engine (here none is asked).
func TestNoDockerHelper(t *testing.T) {
	if os.Getenv("HUBREPLAY_TEST_DOCKER_HELPER") == "" {
		t.Skip("run by TestNoDockerFailsWhereDockerIsRequired")
	}
	NoDocker(t, "no Docker engine answers at unix:///nowhere")
}

// A Docker test without an engine skips, saying why, except where Docker
// must be there (the CI workflow's Docker job): then it fails.
func TestNoDockerFailsWhereDockerIsRequired(t *testing.T) {
	run := func(require string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestNoDockerHelper$", "-test.v")
		cmd.Env = append(os.Environ(), "HUBREPLAY_TEST_DOCKER_HELPER=1", "HUBREPLAY_REQUIRE_DOCKER="+require)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	require.NoError(t, err, out)
	assert.Contains(t, out, "--- SKIP: TestNoDockerHelper")
	assert.Contains(t, out, "no Docker engine answers at unix:///nowhere")

	out, err = run("1")
	require.Error(t, err, out)
	assert.Contains(t, out, "--- FAIL: TestNoDockerHelper")
	assert.Contains(t, out, "HUBREPLAY_REQUIRE_DOCKER=1 says one must")
}
