package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What the k8s backend's workspace pod runs, by exec: the trace in, an
// empty results directory, the results out as a tar stream.
func TestWorkdir(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "hubreplay", "peak.trace")
	r := hubreplay(t, strings.NewReader("the trace's bytes"), "workdir", "put", trace)
	require.Equal(t, 0, r.code, r.stderr)
	b, err := os.ReadFile(trace)
	require.NoError(t, err)
	assert.Equal(t, "the trace's bytes", string(b))

	res := filepath.Join(dir, "hubreplay", "results", "b")
	require.NoError(t, os.MkdirAll(res, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(res, "stale.results"), []byte("old"), 0o644))
	r = hubreplay(t, nil, "workdir", "mkdir", res)
	require.Equal(t, 0, r.code, r.stderr)
	entries, err := os.ReadDir(res)
	require.NoError(t, err)
	assert.Empty(t, entries, "a results directory starts empty")
	st, err := os.Stat(res)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o777), st.Mode().Perm(), "the shards write as another user")

	for _, n := range []string{"shard-0.results", "shard-1.results"} {
		require.NoError(t, os.WriteFile(filepath.Join(res, n), []byte(n), 0o644))
	}
	r = hubreplay(t, nil, "workdir", "get", res)
	require.Equal(t, 0, r.code, r.stderr)
	tr := tar.NewReader(bytes.NewReader([]byte(r.stdout)))
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		got[h.Name] = string(b)
	}
	assert.Equal(t, map[string]string{"shard-0.results": "shard-0.results", "shard-1.results": "shard-1.results"}, got)
}

func TestCompareK8sNeedsItsImage(t *testing.T) {
	tr, _, _ := sampleFile(t)
	r := hubreplay(t, nil, "compare", "--backend", "k8s", "--trace", tr, "--a", "chp@4.6.2", "--b", "chp@4.6.2", "-o", filepath.Join(t.TempDir(), "o"))
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "--image REPO:TAG")
	r = hubreplay(t, nil, "compare", "--backend", "k8s", "--image", "r/h:v1", "--access-mode", "Sometimes", "--trace", tr, "--a", "chp@4.6.2", "--b", "chp@4.6.2", "-o", filepath.Join(t.TempDir(), "o"))
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "--access-mode")
}
