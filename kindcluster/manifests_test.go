package kindcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hubreplay/hubreplay/replay"
)

var start = time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)

func staging(t *testing.T) *Staging {
	t.Helper()
	return &Staging{Namespace: "hubreplay-b", Image: "hubreplay:dev", Candidate: "quay.io/jupyterhub/configurable-http-proxy:4.5.6",
		Token: "0123456789abcdef", Values: DefaultValues(), Trace: "peak.trace", Results: "results/B", Shards: 4,
		Play: []string{"--speed", "10", "--users", "2", "--seed", "7"}, StartAt: start, CheckInterval: time.Minute}
}

// deploy applies a staging to a fake API server and reads back what is
// there: what a cluster would have been given.
func deploy(t *testing.T, s *Staging) (*fake.Clientset, *Objects) {
	t.Helper()
	objs, err := s.Build()
	require.NoError(t, err)
	cs := fake.NewClientset()
	require.NoError(t, Apply(context.Background(), cs, objs))
	return cs, objs
}

func TestEveryObjectDeployed(t *testing.T) {
	s := staging(t)
	cs, _ := deploy(t, s)
	ctx, ns := context.Background(), s.Namespace
	get := metav1.GetOptions{}

	_, err := cs.CoreV1().Namespaces().Get(ctx, ns, get)
	require.NoError(t, err)
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, TokenSecret, get)
	require.NoError(t, err)
	assert.Equal(t, s.Token, sec.StringData[TokenKey])

	t.Run("candidate proxy as z2jh runs it", func(t *testing.T) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, ProxyName, get)
		require.NoError(t, err)
		assert.Equal(t, appsv1.RecreateDeploymentStrategyType, d.Spec.Strategy.Type)
		require.Len(t, d.Spec.Template.Spec.Containers, 1)
		c := d.Spec.Template.Spec.Containers[0]
		assert.Equal(t, s.Candidate, c.Image)
		assert.Equal(t, []string{"configurable-http-proxy", "--ip=", "--api-ip=", "--api-port=8001",
			"--default-target=http://hub:8081", "--error-target=http://hub:8081/hub/error", "--port=8000"}, c.Command)
		assertTokenFromSecret(t, c.Env)
		assert.True(t, resource.MustParse("200m").Equal(c.Resources.Requests[corev1.ResourceCPU]))
		assert.True(t, resource.MustParse("512Mi").Equal(c.Resources.Requests[corev1.ResourceMemory]))
		assert.True(t, resource.MustParse("1Gi").Equal(c.Resources.Limits[corev1.ResourceMemory]), "the limit that makes a leak an OOM kill")
		require.NotNil(t, c.LivenessProbe)
		assert.Equal(t, "/_chp_healthz", c.LivenessProbe.HTTPGet.Path)
		assert.Equal(t, "http", c.LivenessProbe.HTTPGet.Port.String())
		assert.Equal(t, []int32{60, 10, 3, 30}, []int32{c.LivenessProbe.InitialDelaySeconds, c.LivenessProbe.PeriodSeconds, c.LivenessProbe.TimeoutSeconds, c.LivenessProbe.FailureThreshold})
		require.NotNil(t, c.ReadinessProbe)
		assert.Equal(t, []int32{0, 2, 1, 1000}, []int32{c.ReadinessProbe.InitialDelaySeconds, c.ReadinessProbe.PeriodSeconds, c.ReadinessProbe.TimeoutSeconds, c.ReadinessProbe.FailureThreshold})
	})

	t.Run("services", func(t *testing.T) {
		pub, err := cs.CoreV1().Services(ns).Get(ctx, PublicName, get)
		require.NoError(t, err)
		assert.Equal(t, corev1.ServiceTypeNodePort, pub.Spec.Type)
		assert.Equal(t, int32(NodePort), pub.Spec.Ports[0].NodePort, "the port kind maps to the host")
		assert.Equal(t, int32(8000), pub.Spec.Ports[0].Port)
		assert.Equal(t, labels(ProxyName), pub.Spec.Selector)
		api, err := cs.CoreV1().Services(ns).Get(ctx, APIName, get)
		require.NoError(t, err)
		assert.Equal(t, int32(8001), api.Spec.Ports[0].Port)
		hub, err := cs.CoreV1().Services(ns).Get(ctx, HubName, get)
		require.NoError(t, err)
		assert.Equal(t, int32(8081), hub.Spec.Ports[0].Port)
		assert.Equal(t, labels(FixturesName), hub.Spec.Selector)
	})

	at := start.Format(time.RFC3339Nano)
	t.Run("fixtures drive the candidate's routes", func(t *testing.T) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, FixturesName, get)
		require.NoError(t, err)
		c := d.Spec.Template.Spec.Containers[0]
		assert.Equal(t, s.Image, c.Image)
		args := strings.Join(c.Args, " ")
		for _, want := range []string{"fixtures serve", "--trace /hubreplay/peak.trace", "--api http://proxy-api:8001",
			"--hub-listen 0.0.0.0:8081", "--user-listen-ip 0.0.0.0", "--advertise $(POD_IP)", "--speed 10 --users 2 --seed 7",
			"--start-at " + at, "--check-routes-interval 1m0s"} {
			assert.Contains(t, args, want)
		}
		assertTokenFromSecret(t, c.Env)
		assert.Contains(t, c.Env, corev1.EnvVar{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}})
		assertWorkMount(t, d.Spec.Template.Spec, c)
	})

	t.Run("replay shards", func(t *testing.T) {
		j, err := cs.BatchV1().Jobs(ns).Get(ctx, ReplayName, get)
		require.NoError(t, err)
		assert.Equal(t, int32(4), *j.Spec.Completions)
		assert.Equal(t, int32(4), *j.Spec.Parallelism, "all shards at once: they start together")
		assert.Equal(t, "Indexed", string(*j.Spec.CompletionMode))
		assert.Equal(t, int32(0), *j.Spec.BackoffLimit)
		c := j.Spec.Template.Spec.Containers[0]
		args := strings.Join(c.Args, " ")
		for _, want := range []string{"replay --trace /hubreplay/peak.trace", "--target http://proxy-public:8000", "--fixtures=false",
			"--speed 10 --users 2 --seed 7", "--start-at " + at} {
			assert.Contains(t, args, want)
		}
		assertWorkMount(t, j.Spec.Template.Spec, c)
		// Kubernetes expands $(JOB_COMPLETION_INDEX) in each pod: every
		// index is a shard replay accepts, and writes its own file.
		outs := map[string]bool{}
		for i := range 4 {
			expanded := strings.ReplaceAll(args, "$(JOB_COMPLETION_INDEX)", fmt.Sprint(i))
			sh, err := replay.ParseShard(flagValue(t, expanded, "--shard"))
			require.NoError(t, err)
			assert.Equal(t, replay.Shard{Index: i, Count: 4}, sh)
			out := flagValue(t, expanded, "-o")
			assert.Equal(t, fmt.Sprintf("/hubreplay/results/B/shard-%d.results", i), out)
			outs[out] = true
		}
		assert.Len(t, outs, 4)
	})

	t.Run("again: replaced, not doubled", func(t *testing.T) {
		objs, err := s.Build()
		require.NoError(t, err)
		require.NoError(t, Apply(ctx, cs, objs))
		deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		assert.Len(t, deps.Items, 2)
		jobs, err := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		assert.Len(t, jobs.Items, 1)
	})

	t.Run("teardown", func(t *testing.T) {
		require.NoError(t, Teardown(ctx, cs, ns))
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, get)
		assert.Error(t, err, "the namespace is gone, and with it everything in it")
		require.NoError(t, Teardown(ctx, cs, ns), "tearing down twice is fine")
	})
}

func flagValue(t *testing.T, args, flag string) string {
	t.Helper()
	f := strings.Fields(args)
	for i, a := range f {
		if a == flag && i+1 < len(f) {
			return f[i+1]
		}
	}
	t.Fatalf("no %s in %s", flag, args)
	return ""
}

func assertTokenFromSecret(t *testing.T, env []corev1.EnvVar) {
	t.Helper()
	for _, e := range env {
		if e.Name == "CONFIGPROXY_AUTH_TOKEN" {
			require.NotNil(t, e.ValueFrom, "from the Secret, never in the spec")
			assert.Empty(t, e.Value)
			assert.Equal(t, TokenSecret, e.ValueFrom.SecretKeyRef.Name)
			assert.Equal(t, TokenKey, e.ValueFrom.SecretKeyRef.Key)
			return
		}
	}
	t.Errorf("no CONFIGPROXY_AUTH_TOKEN in %v", env)
}

func assertWorkMount(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	require.Len(t, pod.Volumes, 1)
	assert.Equal(t, MountPath, pod.Volumes[0].HostPath.Path, "the node's mount of the host's work directory")
	assert.Equal(t, []corev1.VolumeMount{{Name: pod.Volumes[0].Name, MountPath: MountPath}}, c.VolumeMounts)
}

// An operator's z2jh values file shapes the candidate's pod.
func TestValuesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "values.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
hub:
  config: {JupyterHub: {authenticator_class: dummy}}
proxy:
  service: {type: ClusterIP}
  chp:
    resources:
      requests: {cpu: 500m, memory: 1Gi}
      limits: {memory: 2Gi}
    livenessProbe: {enabled: false}
    readinessProbe: {periodSeconds: 5}
    extraCommandLineFlags: [--timeout=30000]
    extraEnv: {NODE_OPTIONS: --max-old-space-size=1536}
`), 0o644))
	v, err := LoadValues(path)
	require.NoError(t, err)
	s := staging(t)
	s.Values = v
	objs, err := s.Build()
	require.NoError(t, err)
	c := objs.Proxy.Spec.Template.Spec.Containers[0]
	assert.True(t, resource.MustParse("2Gi").Equal(c.Resources.Limits[corev1.ResourceMemory]))
	assert.True(t, resource.MustParse("500m").Equal(c.Resources.Requests[corev1.ResourceCPU]))
	assert.Nil(t, c.LivenessProbe, "disabled")
	require.NotNil(t, c.ReadinessProbe)
	assert.Equal(t, int32(5), c.ReadinessProbe.PeriodSeconds)
	assert.Equal(t, int32(1000), c.ReadinessProbe.FailureThreshold, "what the file leaves out keeps z2jh's default")
	assert.Equal(t, "--timeout=30000", c.Command[len(c.Command)-1])
	assert.Contains(t, c.Env, corev1.EnvVar{Name: "NODE_OPTIONS", Value: "--max-old-space-size=1536"})

	_, err = LoadValues(filepath.Join(t.TempDir(), "missing.yaml"))
	assert.Error(t, err)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("proxy: [not, a, map"), 0o644))
	_, err = LoadValues(bad)
	assert.ErrorContains(t, err, "bad.yaml")
}

func TestBuildRefusesIncompleteStaging(t *testing.T) {
	s := staging(t)
	s.Shards = 0
	_, err := s.Build()
	assert.ErrorContains(t, err, "0 shards")
	s = staging(t)
	s.Token = ""
	_, err = s.Build()
	assert.Error(t, err)
}

// The kubelet's word on the candidate's restarts: how often, and why.
func TestRestartsFromPodStatus(t *testing.T) {
	cs := fake.NewClientset(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "proxy-7d9", Namespace: "ns", Labels: labels(ProxyName)},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "chp", RestartCount: 2,
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}}}},
	}, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "fixtures-1", Namespace: "ns", Labels: labels(FixturesName)},
		Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "fixtures", RestartCount: 1}}},
	})
	rs, err := Restarts(context.Background(), cs, "ns")
	require.NoError(t, err)
	require.Len(t, rs, 1)
	rs[0].At = time.Time{}
	assert.Equal(t, []Restart{{Pod: "proxy-7d9", Container: "chp", Count: 2, Reason: "OOMKilled", ExitCode: 137}}, rs)
}

// Teardown waits for a terminating namespace to be gone: the next
// candidate's Service needs its NodePort.
func TestTeardownWaitsForTheNamespace(t *testing.T) {
	cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hubreplay-a"}})
	terminating := 2
	cs.PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		if terminating > 0 {
			terminating--
			return true, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hubreplay-a"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}, nil
		}
		return false, nil, nil
	})
	require.NoError(t, Teardown(context.Background(), cs, "hubreplay-a"))
	assert.Zero(t, terminating, "it looked until the namespace was gone")
}

func TestMemoryLimitFromCompare(t *testing.T) {
	d := DefaultValues()
	v := d.WithMemoryLimit(256 << 20)
	c := v.Proxy.CHP.Resources
	assert.True(t, resource.MustParse("256Mi").Equal(c.Limits[corev1.ResourceMemory]))
	assert.True(t, resource.MustParse("256Mi").Equal(c.Requests[corev1.ResourceMemory]), "a request above the limit is lowered to it")
	assert.True(t, resource.MustParse("200m").Equal(c.Requests[corev1.ResourceCPU]))
	assert.True(t, resource.MustParse("1Gi").Equal(d.Proxy.CHP.Resources.Limits[corev1.ResourceMemory]), "the defaults are untouched")
	assert.Equal(t, d, d.WithMemoryLimit(0))
}
