package kindcluster

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

// The staging's objects go through a real kube-apiserver (validation,
// defaulting, admission: ServiceAccount, PodSecurity at the namespace's
// default level, ...), not only the offline checks of validate: the
// candidate, fixtures and replay Job a cluster would be given are accepted
// as they are, in both steps, and a second Apply replaces them.
func TestStagingOnARealAPIServer(t *testing.T) {
	s := testenv.StartAPIServer(t)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: s.URL, BearerToken: s.Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	require.NoError(t, err)
	ctx := context.Background()

	st := staging(t)
	objs, err := st.Build()
	require.NoError(t, err)
	first := *objs
	first.Fixtures, first.Replay = nil, nil
	require.NoError(t, Apply(ctx, cs, &first), "the candidate alone, as RunCandidate applies it first")
	require.NoError(t, Apply(ctx, cs, objs), "then everything")
	require.NoError(t, Apply(ctx, cs, objs), "and again: what exists is replaced")

	ns := st.Namespace
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, ProxyName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, st.Candidate, d.Spec.Template.Spec.Containers[0].Image)
	job, err := cs.BatchV1().Jobs(ns).Get(ctx, objs.Replay.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.EqualValues(t, st.Shards, *job.Spec.Completions)
	for _, svc := range []*corev1.Service{objs.Public, objs.API, objs.Hub} {
		got, err := cs.CoreV1().Services(ns).Get(ctx, svc.Name, metav1.GetOptions{})
		require.NoError(t, err, svc.Name)
		assert.NotEmpty(t, got.Spec.ClusterIP, "the server gave %s an address", svc.Name)
	}

	// The k8s backend's staging: its claim, the pod that holds it, the
	// volume the fixtures and shards mount, the public Service without a
	// NodePort.
	k8s := staging(t)
	k8s.Namespace = "hubreplay-k8s"
	claim := &Claim{Image: "registry.example/hubreplay:v1", StorageClass: "nfs"}
	k8s.Work, k8s.NoNodePort = claim.Volume(), true
	kobjs, err := k8s.Build()
	require.NoError(t, err)
	require.NoError(t, Apply(ctx, cs, kobjs))
	_, err = cs.CoreV1().ServiceAccounts(k8s.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	require.NoError(t, err, "no controllers here: the service account they would make")
	pvc, pod := claim.Objects(k8s.Namespace)
	_, err = cs.CoreV1().PersistentVolumeClaims(k8s.Namespace).Create(ctx, pvc, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = cs.CoreV1().Pods(k8s.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
}
