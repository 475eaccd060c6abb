package kindcluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

// shardFile writes what a replay pod writes: a results file of one shard.
func shardFile(t *testing.T, dir string, i, n, requests int) {
	t.Helper()
	w, err := replay.CreateResults(filepath.Join(dir, fmt.Sprintf("shard-%d.results", i)), "test", false)
	require.NoError(t, err)
	require.NoError(t, w.Write(&replay.Run{Trace: "peak.trace", Shard: fmt.Sprintf("%d/%d", i, n), Speed: 10, Requests: requests}))
	for k := range requests {
		status := 200
		q := &replay.Request{TS: time.Duration(k) * time.Millisecond, Sent: time.Duration(k) * time.Millisecond, Conn: uint64(i*1000 + k),
			Record: int64(i*1000 + k), Method: "GET", Target: "/hub/home", Status: status, Want: status, TTLB: time.Millisecond}
		if k%10 == 9 {
			q.Status, q.Error = 503, replay.ErrProxy5xx
		}
		require.NoError(t, w.Write(q))
	}
	require.NoError(t, w.Write(&replay.End{TS: time.Second}))
	require.NoError(t, w.Close())
}

func TestCollectMergesEveryShard(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 {
		shardFile(t, dir, i, 3, 20+i)
	}
	out := filepath.Join(t.TempDir(), "B.results")
	sum, err := Collect(context.Background(), dir, 3, out, nil)
	require.NoError(t, err)
	assert.Equal(t, 63, sum.Requests)
	assert.Equal(t, 6, sum.Failed, "one in ten of each shard")
	res, err := replay.ReadResults(context.Background(), out)
	require.NoError(t, err)
	assert.Len(t, res.Runs, 3, "every shard's run record")
	assert.Len(t, res.Requests, 63)

	_, err = Collect(context.Background(), dir, 3, out, nil)
	assert.ErrorContains(t, err, "exists", "a merged file is not overwritten")
	_, err = Collect(context.Background(), dir, 4, filepath.Join(t.TempDir(), "x.results"), nil)
	assert.ErrorContains(t, err, "shard 3 of 4 wrote none")
	_, err = Collect(context.Background(), dir, 2, filepath.Join(t.TempDir(), "x.results"), nil)
	assert.ErrorContains(t, err, "beyond 2")
}

func TestKindConfig(t *testing.T) {
	c := &Cluster{Name: "hubreplay", WorkDir: "work", HostPort: 18000, Workers: 2}
	cfg, err := c.Config()
	require.NoError(t, err)
	b, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	var back v1alpha4.Cluster
	require.NoError(t, yaml.UnmarshalStrict(b, &back), "%s", b)
	require.Len(t, back.Nodes, 3)
	cp := back.Nodes[0]
	assert.Equal(t, v1alpha4.ControlPlaneRole, cp.Role)
	require.Len(t, cp.ExtraPortMappings, 1)
	assert.Equal(t, v1alpha4.PortMapping{ContainerPort: NodePort, HostPort: 18000, ListenAddress: "127.0.0.1", Protocol: "TCP"}, cp.ExtraPortMappings[0],
		"the proxy's NodePort on the host's loopback")
	abs, _ := filepath.Abs("work")
	for _, n := range back.Nodes {
		assert.Contains(t, n.ExtraMounts, v1alpha4.Mount{HostPath: abs, ContainerPath: MountPath}, "every node sees the work directory")
	}
	assert.Equal(t, "kind.x-k8s.io/v1alpha4", back.APIVersion)
}

// A real cluster, where Docker runs (the CI workflow's docker job); here it
// says why not, or fails where HUBREPLAY_REQUIRE_DOCKER=1.
func TestKindClusterLifecycle(t *testing.T) {
	if host, ok := proxy.DockerEngine(); !ok {
		testenv.NoDocker(t, fmt.Sprintf("no Docker engine answers at %s (the docker client alone is not enough): kind cannot create a cluster here", host))
	}
	if testing.Short() {
		t.Skip("creating a kind cluster takes minutes")
	}
	c := &Cluster{Name: "hubreplay-test-" + strings.ToLower(fmt.Sprint(time.Now().Unix()%100000)), WorkDir: t.TempDir(), HostPort: 0}
	kc, created, err := c.Up()
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Down() })
	assert.True(t, created)
	assert.Contains(t, kc, "server: https://")
	_, again, err := c.Up()
	require.NoError(t, err)
	assert.False(t, again, "an existing cluster is reused")
	ok, nodes, err := c.Status()
	require.NoError(t, err)
	assert.True(t, ok)
	assert.NotEmpty(t, nodes)
	require.NoError(t, c.Down())
	ok, _, err = c.Status()
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestNoEngineSaysSo(t *testing.T) {
	if _, ok := proxy.DockerEngine(); ok {
		t.Skip("a Docker engine runs here")
	}
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "docker.sock"))
	c := &Cluster{Name: "x", WorkDir: t.TempDir()}
	_, _, err := c.Up()
	require.ErrorIs(t, err, ErrNoEngine)
	assert.Contains(t, err.Error(), "docker.sock")
	assert.Contains(t, err.Error(), "the local backend does not")
}
