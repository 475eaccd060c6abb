package kindcluster

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hubreplay/hubreplay/internal/testenv"
)

// The exec that copies a workspace into a pod (and signals tap's capture)
// against a real kubelet: stdin in, stdout back, a failing command's
// stderr in the error. Only where a cluster is given; the fake exec stands
// in everywhere else.
func TestSPDYExecOnARealCluster(t *testing.T) {
	cfg, err := clientcmd.BuildConfigFromFlags("", testenv.Kubeconfig(t))
	require.NoError(t, err)
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods := cs.CoreV1().Pods("default")
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "hubreplay-exec-test-"},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
			Name: "box", Image: "busybox:1.36", Command: []string{"sleep", "300"}}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pods.Delete(context.Background(), pod.Name, metav1.DeleteOptions{}) })
	require.Eventually(t, func() bool {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	}, 4*time.Minute, time.Second, "the pod runs")

	ex := SPDYExec{Config: cfg, Client: cs}
	var out bytes.Buffer
	require.NoError(t, ex.Exec(ctx, "default", pod.Name, "box", []string{"cat"}, strings.NewReader("a workspace's bytes"), &out))
	assert.Equal(t, "a workspace's bytes", out.String())
	err = ex.Exec(ctx, "default", pod.Name, "box", []string{"sh", "-c", "echo no such thing >&2; exit 3"}, nil, &out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no such thing")
}
