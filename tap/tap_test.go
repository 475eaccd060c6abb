package tap

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hubreplay/hubreplay/tap/wire"
	"github.com/hubreplay/hubreplay/trace"
)

// proxyPod is z2jh's proxy pod as the API shows it.
func proxyPod(name string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "jhub", Labels: map[string]string{"app": "jupyterhub", "component": "proxy", "release": "jhub"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "chp", Image: "quay.io/jupyterhub/configurable-http-proxy:4.6.2"}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func TestFindsTheProxyPodAndAsksForTheTap(t *testing.T) {
	cs := fake.NewClientset(proxyPod("proxy-7d9c-abcde", corev1.PodRunning), proxyPod("proxy-old-xyz", corev1.PodFailed),
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hub-1", Namespace: "jhub", Labels: map[string]string{"component": "hub"}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}})
	tp := &Tapper{Client: cs, Poll: time.Millisecond}
	o := Options{Namespace: "jhub", Image: "registry.example/hubreplay-tap:v1.2.3", Duration: 90 * time.Minute, Name: "hubreplay-tap-1"}
	ctx := context.Background()

	pod, err := tp.FindPod(ctx, o)
	require.NoError(t, err)
	assert.Equal(t, "proxy-7d9c-abcde", pod.Name, "the running proxy pod, not the hub or a dead one")

	require.NoError(t, tp.Attach(ctx, pod, EphemeralContainer(o)))
	got, err := cs.CoreV1().Pods("jhub").Get(ctx, pod.Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, got.Spec.EphemeralContainers, 1)
	ec := got.Spec.EphemeralContainers[0]
	assert.Equal(t, "chp", ec.TargetContainerName, "it shares the proxy container's processes")
	assert.Equal(t, "registry.example/hubreplay-tap:v1.2.3", ec.Image)
	assert.Equal(t, []string{"/hubreplay", "capture", "--iface", "any", "--port", "8000", "--api-port", "8001",
		"--max-duration", "1h30m0s", "--source-name", "tap:any", "-o", "-", "--base64"}, ec.Command,
		"a live capture, anonymized in the pod (no --raw, no key sent), streamed as text, stopping by itself")
	require.NotNil(t, ec.SecurityContext)
	assert.ElementsMatch(t, []corev1.Capability{"NET_RAW", "NET_ADMIN"}, ec.SecurityContext.Capabilities.Add)
	assert.Equal(t, []corev1.Capability{"ALL"}, ec.SecurityContext.Capabilities.Drop, "nothing else")
	assert.Zero(t, *ec.SecurityContext.RunAsUser, "root: added capabilities are not effective for another user")
	assert.Empty(t, ec.VolumeMounts, "nothing of the pod's files")

	// The kubelet starts it.
	go func() {
		time.Sleep(20 * time.Millisecond)
		got.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "hubreplay-tap-1", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		_, _ = cs.CoreV1().Pods("jhub").UpdateStatus(ctx, got, metav1.UpdateOptions{})
	}()
	require.NoError(t, tp.WaitRunning(ctx, "jhub", pod.Name, "hubreplay-tap-1"))
}

func TestTapSaysWhatIsWrong(t *testing.T) {
	ctx := context.Background()
	o := Options{Namespace: "jhub"}
	_, err := (&Tapper{Client: fake.NewClientset()}).FindPod(ctx, o)
	assert.ErrorContains(t, err, "no running pod with component=proxy in namespace jhub")

	two := fake.NewClientset(proxyPod("proxy-a", corev1.PodRunning), proxyPod("proxy-b", corev1.PodRunning))
	_, err = (&Tapper{Client: two}).FindPod(ctx, o)
	assert.ErrorContains(t, err, "proxy-a, proxy-b")
	assert.ErrorContains(t, err, "--pod")
	pod, err := (&Tapper{Client: two}).FindPod(ctx, Options{Namespace: "jhub", Pod: "proxy-b"})
	require.NoError(t, err)
	assert.Equal(t, "proxy-b", pod.Name)

	_, err = (&Tapper{Client: two}).FindPod(ctx, Options{Namespace: "jhub", Pod: "proxy-a", Target: "traefik"})
	assert.ErrorContains(t, err, `no container "traefik" (it has chp)`)

	// A policy (or RBAC) refuses ephemeral containers.
	refused := fake.NewClientset(proxyPod("proxy-a", corev1.PodRunning))
	refused.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "ephemeralcontainers" {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods/ephemeralcontainers"}, "proxy-a", io.EOF)
	})
	tp := &Tapper{Client: refused, Poll: time.Millisecond}
	pod, err = tp.FindPod(ctx, o)
	require.NoError(t, err)
	err = tp.Attach(ctx, pod, EphemeralContainer(o))
	var na *NotAllowedError
	require.ErrorAs(t, err, &na)
	assert.Equal(t, "proxy-a", na.Pod)

	// The image cannot be pulled.
	pod.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "tap", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}}}}
	_, err = refused.CoreV1().Pods("jhub").UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)
	err = tp.WaitRunning(ctx, "jhub", "proxy-a", "tap")
	assert.ErrorContains(t, err, "ErrImagePull")
	assert.ErrorContains(t, err, "--image")
}

// writeStream writes records as the pod does: a trace, as base64 lines.
func writeStream(t *testing.T, w io.WriteCloser, h trace.Header, recs []trace.Record, finish bool) {
	t.Helper()
	tw, err := trace.NewWriter(wire.NewWriter(w), h, &trace.WriterOptions{FlushRecords: 2})
	require.NoError(t, err)
	for _, r := range recs {
		require.NoError(t, tw.Write(r))
	}
	require.NoError(t, tw.Flush())
	if finish {
		require.NoError(t, tw.Close())
	}
	w.Close()
}

func TestReceiveWritesTheStreamedTraceLocally(t *testing.T) {
	h := trace.Header{Format: trace.FormatName, Version: trace.Version, Start: time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC), Source: "tap:any", Anon: trace.Anonymization{Scheme: "hmac-sha256/v2"}}
	recs := []trace.Record{
		&trace.ConnOpen{TS: time.Second, Conn: 1},
		&trace.HTTP{TS: time.Second, Conn: 1, User: "u-1", Req: trace.Request{End: time.Second, Method: "GET", Target: "/user/u-1/api/status"}, Resp: &trace.Response{Start: time.Second, End: time.Second, Status: 200}},
		&trace.ConnClose{TS: 2 * time.Second, Conn: 1, How: trace.CloseFIN},
		&trace.Stats{TS: 3 * time.Second, Packets: 10, Bytes: 900, Drops: map[string]uint64{"kernel": 2}},
	}
	for _, finish := range []bool{true, false} {
		pr, pw := io.Pipe()
		go writeStream(t, pw, h, recs, finish)
		out := filepath.Join(t.TempDir(), "tap.trace")
		var shown []Progress
		p, err := Receive(context.Background(), pr, func(h trace.Header, _ int) (*trace.Writer, error) { return trace.Create(out, h, nil) },
			func(p Progress) { shown = append(shown, p) })
		if finish {
			require.NoError(t, err)
		} else {
			require.ErrorContains(t, err, "the stream ended before the capture in the pod finished", "a container killed mid-capture")
		}
		assert.EqualValues(t, 4, p.Records)
		assert.EqualValues(t, 2, p.KernelDrops, "the pod's kernel drops come back with the counters")
		assert.Positive(t, p.Bytes)
		assert.NotEmpty(t, shown)

		r, err := trace.Open(out)
		require.NoError(t, err)
		var got []trace.Record
		require.NoError(t, r.Each(context.Background(), nil, func(rec trace.Record) error {
			if _, ok := rec.(*trace.Header); !ok {
				got = append(got, rec)
			}
			return nil
		}), "the local trace is whole either way")
		r.Close()
		assert.Equal(t, recs, got)
		assert.Equal(t, "tap:any", r.Header().Source)
	}
}

// Stopped here (Ctrl-C, --duration), the local trace keeps what came.
func TestReceiveStoppedByTheOperator(t *testing.T) {
	h := trace.Header{Format: trace.FormatName, Version: trace.Version, Start: time.Now().UTC()}
	pr, pw := io.Pipe()
	go func() {
		tw, err := trace.NewWriter(wire.NewWriter(pw), h, nil) // the header goes out as the reader reads
		if err != nil {
			return
		}
		for i := 0; ; i++ {
			if tw.Write(&trace.Route{TS: time.Duration(i) * time.Millisecond, Op: trace.RouteAdd, Path: "/user/u-1"}) != nil || tw.Flush() != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	out := filepath.Join(t.TempDir(), "tap.trace")
	p, err := Receive(ctx, pr, func(h trace.Header, _ int) (*trace.Writer, error) { return trace.Create(out, h, nil) }, nil)
	require.NoError(t, err)
	assert.Positive(t, p.Records)
	r, err := trace.Open(out)
	require.NoError(t, err)
	n := 0
	require.NoError(t, r.Each(context.Background(), nil, func(rec trace.Record) error {
		if _, ok := rec.(*trace.Route); ok {
			n++
		}
		return nil
	}), "closed whole, though the pod's stream was cut mid-frame")
	r.Close()
	assert.EqualValues(t, p.Records, n)
}

func TestDefaultImage(t *testing.T) {
	assert.Equal(t, "hubreplay-tap:v0.3.0", DefaultImage("v0.3.0"))
	assert.Equal(t, "hubreplay-tap:v0.3.1-0.20261203-abcdef-dirty", DefaultImage("v0.3.1-0.20261203-abcdef+dirty"), "+ is not allowed in a tag")
	assert.Equal(t, "hubreplay-tap:devel", DefaultImage("devel"))
}

// The tap watches the proxy container through the API and says when it
// restarts, and why (an OOM kill).
func TestWatchRestarts(t *testing.T) {
	pod := proxyPod("proxy-a", corev1.PodRunning)
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "chp", RestartCount: 2}}
	cs := fake.NewClientset(pod)
	tp := &Tapper{Client: cs, Poll: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan Restart, 4)
	go tp.WatchRestarts(ctx, "jhub", "proxy-a", "chp", func(r Restart) { got <- r })
	time.Sleep(20 * time.Millisecond) // restarts before the tap began are not news

	killed := time.Date(2026, 12, 3, 15, 3, 12, 0, time.UTC)
	pod.Status.ContainerStatuses[0].RestartCount = 3
	pod.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137, FinishedAt: metav1.NewTime(killed)}}
	_, err := cs.CoreV1().Pods("jhub").UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)
	select {
	case r := <-got:
		assert.Equal(t, Restart{Count: 3, Reason: "OOMKilled", ExitCode: 137, At: killed}, r)
	case <-ctx.Done():
		t.Fatal("the restart was not reported")
	}
	assert.Empty(t, got, "once")
}
