package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/tap"
	"github.com/hubreplay/hubreplay/trace"
)

// The whole tap on a fake cluster: hubreplay tap finds z2jh's proxy pod,
// asks for the ephemeral container, and the command that container would
// run (here: run by the test, a live capture on loopback writing the trace
// to its standard output) streams into the local trace, which reads back
// with every exchange and frame of the client's workload.
func TestTapEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture needs root or CAP_NET_RAW; CI runs as root")
	}
	addr, port := testenv.Serve(t)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "proxy-5f7b9-x2x9q", Namespace: "jhub", Labels: map[string]string{"component": "proxy"}},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "chp"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	_, asked := fakeCluster(t, pod)
	// The container's log stream: its command, run here, on loopback.
	captured := make(chan result, 1)
	tapTestLogs = func(ctx context.Context, namespace, podName, container string) (io.ReadCloser, error) {
		assert.Equal(t, "proxy-5f7b9-x2x9q", podName)
		assert.Equal(t, asked().Name, container)
		args := onLoopback(asked().Command)
		pr, pw := io.Pipe()
		capturing := background(t, pw, args...)
		go func() { captured <- capturing.Wait() }() // it stops by itself at --max-duration
		go func() {
			time.Sleep(500 * time.Millisecond) // the ring is up well before this
			testenv.Drive(t, addr, true)
		}()
		return pr, nil
	}
	t.Cleanup(func() { k8sTestClient, tapTestLogs = nil, nil })

	out := filepath.Join(t.TempDir(), "lecture.trace")
	r := hubreplay(t, nil, "tap", "--namespace", "jhub", "--image", "registry.example/hubreplay-tap:v9", "--port", strconv.Itoa(port),
		"--duration", "4s", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	c := <-captured
	require.Equal(t, 0, c.code, c.stderr)
	assert.Contains(t, c.stderr, "15 HTTP exchanges, 23 WebSocket frames", "the capture in the pod")
	assert.Contains(t, r.stderr, "adding container hubreplay-tap-")
	assert.Contains(t, r.stderr, "wrote "+out)

	assert.Equal(t, "chp", asked().TargetContainerName)
	assert.Equal(t, "registry.example/hubreplay-tap:v9", asked().Image)
	assert.ElementsMatch(t, []corev1.Capability{"NET_RAW", "NET_ADMIN"}, asked().SecurityContext.Capabilities.Add)
	assert.NotContains(t, asked().Command, "--raw", "anonymized in the pod")

	h, recs := readAll(t, out)
	assert.Equal(t, "tap:any", h.Source, "what the pod's command says")
	assert.Equal(t, "hmac-sha256/v2", h.Anon.Scheme)
	assert.Equal(t, 15, count[*trace.HTTP](recs))
	assert.Equal(t, 23, count[*trace.WSFrame](recs))
	for _, s := range testenv.WireSecrets {
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.NotContains(t, string(b), s)
	}
}

// Refused (a policy, RBAC), tap says so and prints the alternatives.
func TestTapRefused(t *testing.T) {
	cs := fake.NewClientset(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "proxy-1", Namespace: "jhub", Labels: map[string]string{"component": "proxy"}},
		Spec:       corev1.PodSpec{NodeName: "node-7", Containers: []corev1.Container{{Name: "chp"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	})
	cs.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods/ephemeralcontainers"}, "proxy-1", errors.New("violates PodSecurity \"baseline:latest\": non-default capabilities"))
	})
	k8sTestClient = func() (kubernetes.Interface, *rest.Config, string, error) { return cs, &rest.Config{}, "jhub", nil }
	t.Cleanup(func() { k8sTestClient = nil })
	r := hubreplay(t, nil, "tap", "-o", filepath.Join(t.TempDir(), "x.trace"))
	assert.Equal(t, 2, r.code, "not a regression: the comparison's input could not be had")
	assert.Contains(t, r.stderr, "PodSecurity")
	assert.Contains(t, r.stderr, "kubectl -n jhub patch deployment proxy --type=json")
	assert.Contains(t, r.stderr, "hostNetwork: true")
	assert.Contains(t, r.stderr, "nodeName: node-7")
	assert.Contains(t, r.stderr, "hubreplay tap --stdin -o TRACE")
}

// The flight recorder in the pod: the tap's command with --ring, run here
// on loopback, sends the recording when the watched proxy process exits
// and again at the end; hubreplay tap --stdin writes each into a file of
// its own.
func TestTapFlightRecorder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture needs root or CAP_NET_RAW; CI runs as root")
	}
	addr, port := testenv.Serve(t)
	const marker = "tap-flight-recorder-proxy-9d2b"
	proxy := markedProcess(t, marker)

	o := tap.Options{Iface: "lo", Ports: []uint16{uint16(port)}, Duration: 5 * time.Second, Ring: time.Minute, Watch: marker}
	args := o.Command()[1:]
	t.Chdir(t.TempDir()) // the capture keeps its segments in its working directory, as in the container's layer
	pr, pw := io.Pipe()
	capturing := background(t, pw, args...)
	go func() {
		time.Sleep(500 * time.Millisecond)
		testenv.Drive(t, addr, true)
		time.Sleep(1500 * time.Millisecond)
		_ = proxy.Process.Kill() // the proxy crashes
	}()
	dir := t.TempDir()
	out := filepath.Join(dir, "lecture.trace")
	r := hubreplay(t, pr, "tap", "--stdin", "--ring", "1m", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	c := capturing.Wait()
	require.Equal(t, 0, c.code, c.stderr)
	assert.Contains(t, c.stderr, "the watched pid")

	dumps, err := filepath.Glob(filepath.Join(dir, "lecture-*.trace"))
	require.NoError(t, err)
	require.Len(t, dumps, 2, "one at the crash, one at the end: %s", r.stderr)
	for _, d := range dumps {
		_, recs := readAll(t, d)
		assert.Equal(t, 15, count[*trace.HTTP](recs), "%s holds the traffic before the crash", d)
	}
	_, err = os.Stat(filepath.Join(".", "hubreplay-capture.ring"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the segments are gone after the last dump")
}

// execFunc is an Execer of a function: the kubelet's exec, as a test plays it.
type execFunc func(ctx context.Context, namespace, pod, container string, cmd []string, stdin io.Reader, stdout io.Writer) error

func (f execFunc) Exec(ctx context.Context, namespace, pod, container string, cmd []string, stdin io.Reader, stdout io.Writer) error {
	return f(ctx, namespace, pod, container, cmd, stdin, stdout)
}

// Ctrl-C at the operator's end stops the capture in the pod too: an exec
// into the tap container signals it (the hidden capture-signal verb), the
// capture ends its trace, and the local file gets all of it. A flight
// recorder without a process to watch in the pod (--watch "") is
// triggered the same way by the proxy's restart the API reports.
func TestTapSignalsTheCaptureInThePod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture needs root or CAP_NET_RAW; CI runs as root")
	}
	addr, port := testenv.Serve(t)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "proxy-1", Namespace: "jhub", Labels: map[string]string{"component": "proxy"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "chp"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "chp"}}},
	}
	cs, asked := fakeCluster(t, pod)
	var capturing *bg
	driven := make(chan struct{})
	tapTestLogs = func(ctx context.Context, namespace, podName, container string) (io.ReadCloser, error) {
		args := onLoopback(asked().Command)
		pr, pw := io.Pipe()
		capturing = background(t, pw, args...)
		go func() {
			defer close(driven)
			time.Sleep(500 * time.Millisecond)
			testenv.Drive(t, addr, true)
		}()
		return pr, nil
	}
	var mu sync.Mutex
	var execs [][]string
	tapTestExec = execFunc(func(_ context.Context, namespace, podName, container string, cmd []string, _ io.Reader, _ io.Writer) error {
		assert.Equal(t, []string{"jhub", "proxy-1", asked().Name}, []string{namespace, podName, container}, "into the tap's container")
		mu.Lock()
		execs = append(execs, cmd)
		mu.Unlock()
		if cmd[len(cmd)-1] == "INT" {
			capturing.cancel() // what capture-signal INT does to the capture: its Ctrl-C
		}
		// (USR1 is not sent for real: other tests' flight recorders share this process.)
		return nil
	})
	execed := func() [][]string { mu.Lock(); defer mu.Unlock(); return slices.Clone(execs) }
	t.Cleanup(func() { k8sTestClient, tapTestLogs, tapTestExec = nil, nil, nil })

	t.Chdir(t.TempDir()) // the capture in the "pod" keeps its ring segments here
	dir := t.TempDir()
	out := filepath.Join(dir, "lecture.trace")
	tapping := background(t, nil, "tap", "--image", "registry.example/hubreplay-tap:v9", "--port", strconv.Itoa(port), "--duration", "1h",
		"--ring", "1m", "--watch", "", "-o", out)
	<-driven
	// The kubelet restarts chp after an OOM kill.
	p, err := cs.CoreV1().Pods("jhub").Get(context.Background(), "proxy-1", metav1.GetOptions{})
	require.NoError(t, err)
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "chp", RestartCount: 1,
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}}}
	require.NoError(t, cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, "jhub"))
	require.Eventually(t, func() bool { return len(execed()) > 0 }, 20*time.Second, 50*time.Millisecond, "the restart triggers the flight recorder")

	r := tapping.Stop() // Ctrl-C, with the capture in the pod meant to run for an hour
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, [][]string{{"/hubreplay", "capture-signal", "USR1"}, {"/hubreplay", "capture-signal", "INT"}}, execed())
	c := capturing.Wait()
	require.Equal(t, 0, c.code, c.stderr)
	assert.Contains(t, r.stderr, "restarted (restart 1: OOMKilled, exit 137")
	assert.Contains(t, r.stderr, "stopped on Ctrl-C, the capture in the pod with it")
	dumps, err := filepath.Glob(filepath.Join(dir, "lecture-*.trace"))
	require.NoError(t, err)
	require.Len(t, dumps, 1, "the recorder's window at the stop: %s", r.stderr)
	_, recs := readAll(t, dumps[0])
	assert.Equal(t, 15, count[*trace.HTTP](recs), "everything up to the stop")
	assert.Equal(t, 23, count[*trace.WSFrame](recs))
}

// fakeCluster stands in for a cluster holding pod (in jhub), whose kubelet
// runs an ephemeral container as soon as it is added; asked returns the
// last one asked for.
func fakeCluster(t *testing.T, pod *corev1.Pod) (cs *fake.Clientset, asked func() corev1.EphemeralContainer) {
	t.Helper()
	cs = fake.NewClientset(pod)
	var mu sync.Mutex
	var last corev1.EphemeralContainer
	cs.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "ephemeralcontainers" {
			return false, nil, nil
		}
		p := a.(k8stesting.UpdateAction).GetObject().(*corev1.Pod).DeepCopy()
		ec := p.Spec.EphemeralContainers[len(p.Spec.EphemeralContainers)-1]
		mu.Lock()
		last = ec
		mu.Unlock()
		p.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: ec.Name, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		require.NoError(t, cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, "jhub"))
		return true, p, nil
	})
	k8sTestClient = func() (kubernetes.Interface, *rest.Config, string, error) { return cs, &rest.Config{}, "jhub", nil }
	return cs, func() corev1.EphemeralContainer { mu.Lock(); defer mu.Unlock(); return last }
}

// onLoopback is the pod's command, run here: without the image's
// /hubreplay, this machine's loopback standing in for the pod's interfaces.
func onLoopback(cmd []string) []string {
	args := slices.Clone(cmd[1:])
	for i, a := range args {
		if a == "--iface" {
			args[i+1] = "lo"
		}
	}
	return args
}
