package kindcluster

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/hubreplay/hubreplay/internal/wait"
)

// Workspace is how the trace reaches a staging's pods and how the shards'
// results come back: kind's nodes mount a host directory; a cluster of the
// operators' own gets a volume claim in the staging's namespace.
type Workspace interface {
	// Volume is what the fixtures and the shards mount at MountPath.
	Volume() corev1.VolumeSource
	// Stage readies it in namespace ns, which exists: the trace under
	// traceName, an empty results directory.
	Stage(ctx context.Context, ns, trace, traceName, results string) error
	// Results makes the results directory readable here and returns it.
	Results(ctx context.Context, ns, results string) (string, error)
}

// HostDir is kind's workspace: a host directory every node mounts at
// MountPath (the cluster's extraMounts).
type HostDir struct{ Dir string }

func (h HostDir) Volume() corev1.VolumeSource {
	dir := corev1.HostPathDirectory
	return corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: MountPath, Type: &dir}}
}

func (h HostDir) Stage(_ context.Context, _, trace, traceName, results string) error {
	if err := copyInto(trace, filepath.Join(h.Dir, traceName)); err != nil {
		return err
	}
	res := filepath.Join(h.Dir, results)
	if err := os.RemoveAll(res); err != nil {
		return fmt.Errorf("clear %s: %w", res, err)
	}
	if err := os.MkdirAll(res, 0o777); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	_ = os.Chmod(res, 0o777) // the pods write as an unprivileged user
	return nil
}

func (h HostDir) Results(_ context.Context, _, results string) (string, error) {
	return filepath.Join(h.Dir, results), nil
}

// Execer runs a command in a pod's container, with stdin (nil: none) and
// what it writes to stdout.
type Execer interface {
	Exec(ctx context.Context, namespace, pod, container string, cmd []string, stdin io.Reader, stdout io.Writer) error
}

// Names of the claim's objects.
const (
	ClaimName   = "hubreplay-work"
	WorkPodName = "hubreplay-work"
)

// Claim is the workspace in a cluster of the operators' own: a
// PersistentVolumeClaim in the staging's namespace (deleted with it), which
// a pod running hubreplay's image holds; the trace goes in and the results
// come out through it ('hubreplay workdir', by exec, as kubectl cp does).
type Claim struct {
	Client kubernetes.Interface
	Exec   Execer
	// Image is hubreplay's image, pullable from the cluster.
	Image string
	// StorageClass ("" the cluster's default) must offer AccessMode:
	// ReadWriteMany when shards run on several nodes.
	StorageClass string
	AccessMode   corev1.PersistentVolumeAccessMode
	Size         resource.Quantity
	// LocalDir is where results are copied to.
	LocalDir string
	// Poll and Timeout bound the wait for the pod (default 1 s, 5 min).
	Poll, Timeout time.Duration
}

func (c *Claim) Volume() corev1.VolumeSource {
	return corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: ClaimName}}
}

// Objects are the claim and the pod that holds it, in namespace ns.
func (c *Claim) Objects(ns string) (*corev1.PersistentVolumeClaim, *corev1.Pod) {
	mode := c.AccessMode
	if mode == "" {
		mode = corev1.ReadWriteMany
	}
	size := c.Size
	if size.IsZero() {
		size = resource.MustParse("20Gi")
	}
	pvc := &corev1.PersistentVolumeClaim{TypeMeta: typeMeta("v1", "PersistentVolumeClaim"), ObjectMeta: metav1.ObjectMeta{Name: ClaimName, Namespace: ns, Labels: labels("work")},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{mode},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}}}
	if c.StorageClass != "" {
		pvc.Spec.StorageClassName = &c.StorageClass
	}
	// hubreplay's image runs as 65532; fsGroup makes the claim writable
	// for it where the volume type manages ownership.
	uid := int64(65532)
	pod := &corev1.Pod{TypeMeta: typeMeta("v1", "Pod"), ObjectMeta: metav1.ObjectMeta{Name: WorkPodName, Namespace: ns, Labels: labels("work")},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, SecurityContext: &corev1.PodSecurityContext{FSGroup: &uid},
			Containers: []corev1.Container{{Name: "work", Image: c.Image, ImagePullPolicy: corev1.PullIfNotPresent,
				Args:         []string{"workdir", "hold"},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: MountPath}}}},
			Volumes: []corev1.Volume{{Name: "work", VolumeSource: c.Volume()}}}}
	return pvc, pod
}

// Stage creates the claim and its pod, waits for the pod, and puts the
// trace in and an empty results directory.
func (c *Claim) Stage(ctx context.Context, ns, trace, traceName, results string) error {
	pvc, pod := c.Objects(ns)
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("workspace: claim %s in %s: %w", ClaimName, ns, err)
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("workspace: pod %s in %s: %w", WorkPodName, ns, err)
	}
	if err := c.waitRunning(ctx, ns); err != nil {
		return err
	}
	f, err := os.Open(trace)
	if err != nil {
		return fmt.Errorf("workspace: %w", err)
	}
	defer f.Close()
	if err := c.run(ctx, ns, []string{"/hubreplay", "workdir", "put", path.Join(MountPath, traceName)}, f, io.Discard); err != nil {
		return fmt.Errorf("workspace: put the trace: %w", err)
	}
	if err := c.run(ctx, ns, []string{"/hubreplay", "workdir", "mkdir", path.Join(MountPath, results)}, nil, io.Discard); err != nil {
		return fmt.Errorf("workspace: results directory: %w", err)
	}
	return nil
}

func (c *Claim) run(ctx context.Context, ns string, cmd []string, stdin io.Reader, stdout io.Writer) error {
	return c.Exec.Exec(ctx, ns, WorkPodName, "work", cmd, stdin, stdout)
}

// waitRunning waits for the work pod, and says why it will not run (a
// claim no storage class can bind, an image the cluster cannot pull).
func (c *Claim) waitRunning(ctx context.Context, ns string) error {
	ctx, cancel := context.WithTimeout(ctx, or(c.Timeout, 5*time.Minute))
	defer cancel()
	for {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, WorkPodName, metav1.GetOptions{})
		if err == nil {
			switch p.Status.Phase {
			case corev1.PodRunning:
				return nil
			case corev1.PodFailed, corev1.PodSucceeded:
				return fmt.Errorf("workspace: pod %s in %s ended (%s): %s", WorkPodName, ns, p.Status.Phase, p.Status.Message)
			}
			for _, s := range p.Status.ContainerStatuses {
				if w := s.State.Waiting; w != nil && (strings.Contains(w.Reason, "Err") || strings.Contains(w.Reason, "BackOff")) {
					return fmt.Errorf("workspace: pod %s in %s cannot start (%s): %s; is hubreplay's image pullable from the cluster?", WorkPodName, ns, w.Reason, w.Message)
				}
			}
		}
		if !wait.For(ctx, or(c.Poll, time.Second)) {
			why := "the pod did not start"
			if claim, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(context.WithoutCancel(ctx), ClaimName, metav1.GetOptions{}); err == nil && claim.Status.Phase != corev1.ClaimBound {
				why = fmt.Sprintf("claim %s is %s: does the storage class offer %s?", ClaimName, claim.Status.Phase, claim.Spec.AccessModes)
			}
			return fmt.Errorf("workspace: waiting for pod %s in %s: %s", WorkPodName, ns, why)
		}
	}
}

// Results copies the results directory out of the claim (a tar stream
// from 'hubreplay workdir get') into LocalDir.
func (c *Claim) Results(ctx context.Context, ns, results string) (string, error) {
	dir := filepath.Join(c.LocalDir, ns, results)
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("workspace: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("workspace: %w", err)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- untar(pr, dir); pr.Close() }()
	err := c.run(ctx, ns, []string{"/hubreplay", "workdir", "get", path.Join(MountPath, results)}, nil, pw)
	pw.CloseWithError(err)
	if uerr := <-done; err == nil {
		err = uerr
	}
	if err != nil {
		return "", fmt.Errorf("workspace: get the results: %w", err)
	}
	return dir, nil
}

// untar writes a tar stream's regular files into dir, refusing names that
// would leave it.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("refusing %q: outside the results directory", h.Name)
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// SPDYExec runs commands in pods through the API server, as kubectl exec.
type SPDYExec struct {
	Config *rest.Config
	Client kubernetes.Interface
}

func (e SPDYExec) Exec(ctx context.Context, namespace, pod, container string, cmd []string, stdin io.Reader, stdout io.Writer) error {
	req := e.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdin: stdin != nil, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(e.Config, "POST", req.URL())
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: &stderr}); err != nil {
		return fmt.Errorf("%s in pod %s: %w: %s", strings.Join(cmd, " "), pod, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
