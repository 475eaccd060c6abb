package kindcluster

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/proxy"
)

// The image is a static binary on scratch: built the Dockerfile's way, the
// binary needs no loader and no library, and runs.
func TestStaticBinaryForTheImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hubreplay")
	}
	bin := filepath.Join(t.TempDir(), "hubreplay")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/hubreplay/hubreplay/cmd/hubreplay")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "no dynamic loader: it runs on scratch")
	}
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	assert.Empty(t, libs)
	out, err = exec.Command(bin, "version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "hubreplay")

	df, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	assert.Contains(t, string(df), "CGO_ENABLED=0 go build")
	assert.Contains(t, string(df), "FROM scratch")
}

func TestBuildImage(t *testing.T) {
	if host, ok := proxy.DockerEngine(); !ok {
		_, err := BuildImage(context.Background(), "..", "hubreplay", "test")
		require.ErrorIs(t, err, ErrNoEngine)
		testenv.NoDocker(t, fmt.Sprintf("no Docker engine answers at %s: the image cannot be built here (the error says so)", host))
	}
	name, err := BuildImage(context.Background(), "..", "hubreplay", "test")
	require.NoError(t, err)
	assert.Equal(t, "hubreplay:test", name)
}
