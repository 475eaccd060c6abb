//go:build !tapimage

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The kubeconfig is read as kubectl reads it: the file given, the context
// named (else the current one), and that context's namespace; a context
// it lacks is an error that names it, and a missing file a usage error
// from tap (exit 2) before anything is asked of a cluster.
func TestKubeconfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	require.NoError(t, os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod
  cluster: {server: "https://127.0.0.1:6443"}
- name: staging
  cluster: {server: "https://127.0.0.1:7443"}
users:
- name: op
  user: {token: "not-a-real-token"}
contexts:
- name: prod
  context: {cluster: prod, user: op, namespace: jhub}
- name: staging
  context: {cluster: staging, user: op, namespace: jhub-staging}
`), 0o600))
	t.Setenv("KUBECONFIG", filepath.Join(dir, "elsewhere")) // the file given wins

	_, rc, ns, err := k8sClient(path, "")
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:6443", rc.Host, "the current context")
	assert.Equal(t, "jhub", ns)
	_, rc, ns, err = k8sClient(path, "staging")
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:7443", rc.Host)
	assert.Equal(t, "jhub-staging", ns)
	_, _, _, err = k8sClient(path, "dev")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "context: dev")

	r := hubreplay(t, nil, "tap", "--kubeconfig", filepath.Join(dir, "missing"), "-o", filepath.Join(dir, "x.trace"))
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "kubeconfig")
}
