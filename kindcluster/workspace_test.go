package kindcluster

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/hubreplay/hubreplay/replay"
)

// claimExec plays the workspace pod: a local directory stands for the
// claim, and the commands do what 'hubreplay workdir' does.
type claimExec struct {
	dir string
	ran [][]string
}

func (c *claimExec) Exec(_ context.Context, _, pod, container string, cmd []string, stdin io.Reader, stdout io.Writer) error {
	c.ran = append(c.ran, cmd)
	if pod != WorkPodName || container != "work" || len(cmd) != 4 || cmd[0] != "/hubreplay" || cmd[1] != "workdir" {
		return fmt.Errorf("unexpected exec in %s/%s: %v", pod, container, cmd)
	}
	p := filepath.Join(c.dir, cmd[3])
	switch cmd[2] {
	case "put":
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		b, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	case "mkdir":
		return os.MkdirAll(p, 0o777)
	case "get":
		tw := tar.NewWriter(stdout)
		entries, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(p, e.Name()))
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Name: e.Name(), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			if _, err := tw.Write(b); err != nil {
				return err
			}
		}
		return tw.Close()
	}
	return fmt.Errorf("unexpected workdir verb %q", cmd[2])
}

// created is what a run asked the API server to create, by kind and name.
func created(cs *fake.Clientset) map[string]runtime.Object {
	out := map[string]runtime.Object{}
	for _, a := range cs.Actions() {
		if c, ok := a.(k8stesting.CreateAction); ok && a.GetSubresource() == "" {
			obj := c.GetObject()
			if m, ok := obj.(metav1.Object); ok {
				out[a.GetResource().Resource+"/"+m.GetName()] = obj
			}
		}
	}
	return out
}

// playCluster plays a cluster's controllers and kubelets for namespace ns
// on a fake clientset: the work pod (with a claim workspace) runs, the
// Deployments become available, then pods (if not nil) makes the
// candidate's pods, the shards write their results (into results), and the
// replay Job completes once it exists (on a loaded machine the backend
// may create it well after the pods).
func playCluster(ctx context.Context, t *testing.T, cs *fake.Clientset, ns string, claim bool, results string, pods func()) {
	for claim && ctx.Err() == nil {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, WorkPodName, metav1.GetOptions{})
		if err == nil {
			p.Status.Phase = corev1.PodRunning
			_, _ = cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, name := range []string{ProxyName, FixturesName} {
		for ctx.Err() == nil {
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				d.Status = appsv1.DeploymentStatus{AvailableReplicas: 1, Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}}
				_, _ = cs.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{})
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if pods != nil {
		pods()
	}
	for i := range 2 {
		shardFile(t, results, i, 2, 10)
	}
	for ctx.Err() == nil {
		j, err := cs.BatchV1().Jobs(ns).Get(ctx, ReplayName, metav1.GetOptions{})
		if err == nil {
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
			_, _ = cs.BatchV1().Jobs(ns).UpdateStatus(ctx, j, metav1.UpdateOptions{})
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runCandidate runs candidate B on a fake cluster and checks that both
// shards' results were merged.
func runCandidate(t *testing.T, b *Backend, cs *fake.Clientset, results string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	go playCluster(ctx, t, cs, "hubreplay-b", b.Work != nil, results, nil)
	out := filepath.Join(t.TempDir(), "B.results")
	require.NoError(t, b.RunCandidate(ctx, "B", mustSpec(t, "chp@4.5.6"), out))
	res, err := replay.ReadResults(ctx, out)
	require.NoError(t, err)
	assert.Len(t, res.Runs, 2, "both shards merged")
	assert.Len(t, res.Requests, 20)
}

// --backend k8s stages the same objects as kind in a cluster given by a
// kubeconfig, but for how the trace gets in and the results out (a claim
// in the namespace instead of the nodes' host directory) and the proxy's
// public Service (inside the cluster, no NodePort).
func TestK8sBackendStagesWhatKindDoes(t *testing.T) {
	tracePath := filepath.Join(t.TempDir(), "peak.trace")
	require.NoError(t, os.WriteFile(tracePath, []byte("a trace"), 0o644))
	backend := func(cs *fake.Clientset) *Backend {
		return &Backend{Client: cs, Stats: func(context.Context, string, string) ([]byte, error) { return nil, fmt.Errorf("no kubelet") },
			Image: "registry.example/hubreplay:v1", Trace: tracePath, Play: []string{"--speed", "10"}, Shards: 2, Values: DefaultValues(),
			Settle: 10 * time.Millisecond, Lead: time.Second, Poll: 10 * time.Millisecond, Timeout: 5 * time.Second,
			NewRecorder: func(replay.RecordWriter, time.Time) Recorder { return &testRecorder{} }}
	}

	work := t.TempDir()
	kindCS := fake.NewClientset()
	kb := backend(kindCS)
	kb.Cluster = &Cluster{Name: "t", WorkDir: work}
	runCandidate(t, kb, kindCS, filepath.Join(work, "results", "b"))

	claim := &claimExec{dir: t.TempDir()}
	k8sCS := fake.NewClientset()
	k8s := backend(k8sCS)
	k8s.Name = "k8s"
	k8s.Work = &Claim{Client: k8sCS, Exec: claim, Image: k8s.Image, StorageClass: "nfs", LocalDir: t.TempDir(), Poll: time.Millisecond}
	runCandidate(t, k8s, k8sCS, filepath.Join(claim.dir, MountPath, "results", "b"))

	b, err := os.ReadFile(filepath.Join(claim.dir, MountPath, "peak.trace"))
	require.NoError(t, err)
	assert.Equal(t, "a trace", string(b), "the trace went into the claim")
	assert.Equal(t, [][]string{
		{"/hubreplay", "workdir", "put", "/hubreplay/peak.trace"},
		{"/hubreplay", "workdir", "mkdir", "/hubreplay/results/b"},
		{"/hubreplay", "workdir", "get", "/hubreplay/results/b"},
	}, claim.ran)

	kindObjs, k8sObjs := created(kindCS), created(k8sCS)
	var extra []string
	for name := range k8sObjs {
		if _, ok := kindObjs[name]; !ok {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	assert.Equal(t, []string{"persistentvolumeclaims/hubreplay-work", "pods/hubreplay-work"}, extra, "the workspace, and nothing else kind does not make")
	for name := range kindObjs {
		assert.Contains(t, k8sObjs, name)
	}

	pvc := k8sObjs["persistentvolumeclaims/hubreplay-work"].(*corev1.PersistentVolumeClaim)
	assert.Equal(t, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, pvc.Spec.AccessModes, "shards on several nodes share it")
	assert.Equal(t, "nfs", *pvc.Spec.StorageClassName)
	pod := k8sObjs["pods/hubreplay-work"].(*corev1.Pod)
	assert.Equal(t, []string{"workdir", "hold"}, pod.Spec.Containers[0].Args)
	assert.Equal(t, "registry.example/hubreplay:v1", pod.Spec.Containers[0].Image)

	// The same candidate, fixtures and shards, but for their volume and
	// the run's start time.
	norm := func(spec corev1.PodSpec) corev1.PodSpec {
		spec = *spec.DeepCopy()
		for i := range spec.Volumes {
			spec.Volumes[i].VolumeSource = corev1.VolumeSource{}
		}
		for i, c := range spec.Containers {
			for j := range c.Args {
				if j > 0 && c.Args[j-1] == "--start-at" {
					spec.Containers[i].Args[j] = "START"
				}
			}
		}
		return spec
	}
	for _, name := range []string{"deployments/" + ProxyName, "deployments/" + FixturesName} {
		assert.Equal(t, norm(kindObjs[name].(*appsv1.Deployment).Spec.Template.Spec), norm(k8sObjs[name].(*appsv1.Deployment).Spec.Template.Spec), name)
	}
	assert.Equal(t, norm(kindObjs["jobs/"+ReplayName].(*batchv1.Job).Spec.Template.Spec), norm(k8sObjs["jobs/"+ReplayName].(*batchv1.Job).Spec.Template.Spec))
	fixtures := k8sObjs["deployments/"+FixturesName].(*appsv1.Deployment)
	require.NotNil(t, fixtures.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim)
	assert.Equal(t, ClaimName, fixtures.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName)
	public := k8sObjs["services/"+PublicName].(*corev1.Service)
	assert.Equal(t, corev1.ServiceTypeClusterIP, public.Spec.Type, "the shards reach it inside the cluster")
	assert.Zero(t, public.Spec.Ports[0].NodePort)
	assert.Equal(t, corev1.ServiceTypeNodePort, kindObjs["services/"+PublicName].(*corev1.Service).Spec.Type)
}

// A claim no storage class binds is named, not waited on in silence.
func TestClaimThatDoesNotBind(t *testing.T) {
	cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hubreplay-a"}})
	c := &Claim{Client: cs, Exec: &claimExec{dir: t.TempDir()}, Image: "hubreplay:v1", Poll: time.Millisecond, Timeout: 50 * time.Millisecond}
	err := c.Stage(context.Background(), "hubreplay-a", "peak.trace", "peak.trace", "results/a")
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "claim hubreplay-work is") && strings.Contains(err.Error(), "ReadWriteMany"), err.Error())
}
