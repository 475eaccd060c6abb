package kindcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

type testRecorder struct {
	samples []proxy.Sample
	exits   []proxy.Exit
	role    string
	version string
	limit   string
}

func (r *testRecorder) Sample(s proxy.Sample) { r.samples = append(r.samples, s) }
func (r *testRecorder) Exit(e proxy.Exit)     { r.exits = append(r.exits, e) }
func (r *testRecorder) Candidate(role, _, version, _, limit string, _ time.Duration) {
	r.role, r.version, r.limit = role, version, limit
}
func (r *testRecorder) Err() error { return nil }

const summaryJSON = `{"node":{"nodeName":"node-1"},"pods":[
 {"podRef":{"name":"fixtures-1","namespace":"hubreplay-b"},"containers":[{"name":"fixtures","memory":{"rssBytes":1}}]},
 {"podRef":{"name":"proxy-abc","namespace":"hubreplay-b"},"containers":[{"name":"chp","cpu":{"usageCoreNanoSeconds":2500000000},
  "memory":{"rssBytes":73400320,"workingSetBytes":80000000}}]}]}`

const cadvisorText = `# HELP container_file_descriptors Number of open file descriptors for the container.
# TYPE container_file_descriptors gauge
container_file_descriptors{container="chp",namespace="hubreplay-b",pod="proxy-abc"} 41
container_file_descriptors{container="fixtures",namespace="hubreplay-b",pod="fixtures-1"} 300
# HELP container_sockets Number of open sockets for the container.
# TYPE container_sockets gauge
container_sockets{container="chp",namespace="hubreplay-b",pod="proxy-abc"} 17
`

// The cluster is played by client-go's fake clientset and a goroutine in
// the role of its controllers and kubelets: the Deployments become
// available, the proxy pod runs (after an OOM kill), the shards write
// their results into the shared directory, the Job completes.
func TestBackendRunsACandidate(t *testing.T) {
	work := t.TempDir()
	tracePath := filepath.Join(t.TempDir(), "peak.trace")
	require.NoError(t, os.WriteFile(tracePath, []byte("a trace"), 0o644))
	cs := fake.NewClientset()
	var asked []string
	stats := func(_ context.Context, node, path string) ([]byte, error) {
		asked = append(asked, node+" "+path)
		if path == "stats/summary" {
			return []byte(summaryJSON), nil
		}
		return []byte(cadvisorText), nil
	}
	rec := &testRecorder{}
	b := &Backend{Cluster: &Cluster{Name: "t", WorkDir: work}, Client: cs, Stats: stats, Image: "hubreplay:dev", Trace: tracePath,
		Play: []string{"--speed", "10"}, Shards: 2, Values: DefaultValues(), Settle: 10 * time.Millisecond, Lead: time.Second,
		Poll: 10 * time.Millisecond, Timeout: 5 * time.Second,
		NewRecorder: func(replay.RecordWriter, time.Time) Recorder { return rec }}
	var said []string
	b.Say = func(format string, args ...any) { said = append(said, fmt.Sprintf(format, args...)) }

	// A bound, so that a run that waits for what never comes fails here
	// instead of holding make test.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := "hubreplay-b"
	go playCluster(ctx, t, cs, ns, false, filepath.Join(work, "results", "b"), func() {
		_, _ = cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "proxy-abc", Namespace: ns, Labels: labels(ProxyName)},
			Spec:       corev1.PodSpec{NodeName: "node-1"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "chp", RestartCount: 1,
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137,
					FinishedAt: metav1.NewTime(time.Now())}}}}},
		}, metav1.CreateOptions{})
		time.Sleep(50 * time.Millisecond)
	})

	out := filepath.Join(t.TempDir(), "B.results")
	require.NoError(t, b.RunCandidate(ctx, "B", mustSpec(t, "chp@4.5.6"), out))

	res, err := replay.ReadResults(ctx, out)
	require.NoError(t, err)
	assert.Len(t, res.Runs, 2, "both shards merged")
	assert.Len(t, res.Requests, 20)
	assert.FileExists(t, filepath.Join(work, "peak.trace"), "the trace is where the pods look")

	require.NotEmpty(t, rec.samples)
	s := rec.samples[0]
	assert.True(t, s.Up)
	assert.Equal(t, int64(73400320), s.RSS)
	assert.Equal(t, 2500*time.Millisecond, s.CPU)
	assert.Equal(t, 41, s.FDs)
	assert.Equal(t, 17, s.SocketFDs)
	assert.Equal(t, 2, s.Starts)
	assert.Contains(t, asked, "node-1 metrics/cadvisor")
	require.Len(t, rec.exits, 1)
	assert.True(t, rec.exits[0].OOM)
	assert.Equal(t, "OOM-killed at the pod's memory limit", rec.exits[0].Cause)
	assert.Equal(t, "B", rec.role)
	assert.Equal(t, "4.5.6", rec.version)
	assert.Equal(t, "pod memory limit 1Gi", rec.limit)

	_, err = cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	assert.Error(t, err, "torn down: nothing left behind")
	require.NotEmpty(t, said, "progress told")
	assert.Contains(t, said[0], "hubreplay-b: candidate chp@4.5.6")
	assert.Contains(t, said[len(said)-1], "merging 2 shards' results")
}

func mustSpec(t *testing.T, s string) proxy.Spec {
	t.Helper()
	sp, err := proxy.ParseSpec(s)
	require.NoError(t, err)
	return sp
}

func TestCandidateImage(t *testing.T) {
	img, err := CandidateImage(mustSpec(t, "chp@4.5.6"))
	require.NoError(t, err)
	assert.Equal(t, "quay.io/jupyterhub/configurable-http-proxy:4.5.6", img)
	img, err = CandidateImage(mustSpec(t, "image:my-chp:pr-42"))
	require.NoError(t, err)
	assert.Equal(t, "my-chp:pr-42", img)
	_, err = CandidateImage(mustSpec(t, "chp:../fork"))
	assert.ErrorContains(t, err, "docker build")
	_, err = CandidateImage(mustSpec(t, "cmd:x {port}"))
	assert.ErrorContains(t, err, "local backend")
	assert.Equal(t, "a-noise", slug("A'"))
	assert.Equal(t, "a-noise2", slug("A'2"))
}
