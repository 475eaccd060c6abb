package tap

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/hubreplay/hubreplay/internal/testenv"
)

// The ephemeral container the tap asks for goes through a real
// kube-apiserver: accepted where the namespace allows it (validation of
// the pods/ephemeralcontainers update included), and refused by PodSecurity
// where the namespace enforces the baseline level (NET_RAW is not in it),
// which the tap reports as not allowed, with its alternatives.
func TestEphemeralContainerOnARealAPIServer(t *testing.T) {
	s := testenv.StartAPIServer(t)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: s.URL, BearerToken: s.Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	require.NoError(t, err)
	ctx := context.Background()
	tp := &Tapper{Client: cs}

	for _, c := range []struct {
		namespace string
		labels    map[string]string
		allowed   bool
	}{
		{"jhub", nil, true},
		{"jhub-baseline", map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}, false},
	} {
		t.Run(c.namespace, func(t *testing.T) {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.namespace, Labels: c.labels}}, metav1.CreateOptions{})
			require.NoError(t, err)
			// No controllers run here: the service account they would make.
			_, err = cs.CoreV1().ServiceAccounts(c.namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
			require.NoError(t, err)
			pod := proxyPod("proxy-7d9c-abcde", corev1.PodPending)
			pod.Namespace = c.namespace
			pod, err = cs.CoreV1().Pods(c.namespace).Create(ctx, pod, metav1.CreateOptions{})
			require.NoError(t, err, "z2jh's proxy pod")

			o := Options{Namespace: c.namespace, Pod: pod.Name, Image: "registry.example/hubreplay-tap:v1", Name: "hubreplay-tap-1"}
			found, err := tp.FindPod(ctx, o)
			require.NoError(t, err)
			err = tp.Attach(ctx, found, EphemeralContainer(o))
			if !c.allowed {
				var na *NotAllowedError
				require.ErrorAs(t, err, &na, "PodSecurity baseline refuses NET_RAW")
				assert.ErrorContains(t, err, "NET_RAW")
				return
			}
			require.NoError(t, err)
			got, err := cs.CoreV1().Pods(c.namespace).Get(ctx, pod.Name, metav1.GetOptions{})
			require.NoError(t, err)
			require.Len(t, got.Spec.EphemeralContainers, 1)
			ec := got.Spec.EphemeralContainers[0]
			assert.Equal(t, "chp", ec.TargetContainerName)
			assert.Equal(t, EphemeralContainer(o).Command, ec.Command)
			assert.ElementsMatch(t, []corev1.Capability{"NET_RAW", "NET_ADMIN"}, ec.SecurityContext.Capabilities.Add)
		})
	}
}
