package kindcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hubreplay/hubreplay/internal/wait"
	"github.com/hubreplay/hubreplay/replay"
)

// Apply creates the objects in order; one that exists is replaced (a Job's
// spec cannot change, so it is deleted and made again). Objects left nil
// are skipped, so that a staging can go in in two steps.
func Apply(ctx context.Context, cs kubernetes.Interface, o *Objects) error {
	ns := o.Namespace.Name
	var steps []step
	if o.Secret != nil {
		steps = append(steps, step{"secret " + o.Secret.Name, func() error {
			_, err := cs.CoreV1().Secrets(ns).Create(ctx, o.Secret, metav1.CreateOptions{})
			return err
		},
			func() error {
				_, err := cs.CoreV1().Secrets(ns).Update(ctx, o.Secret, metav1.UpdateOptions{})
				return err
			}})
	}
	for _, d := range []*appsv1.Deployment{o.Proxy, o.Fixtures} {
		if d != nil {
			steps = append(steps, deploymentStep(ctx, cs, d))
		}
	}
	for _, svc := range []*corev1.Service{o.Public, o.API, o.Hub} {
		if svc != nil {
			steps = append(steps, serviceStep(ctx, cs, svc))
		}
	}
	if o.Replay != nil {
		steps = append(steps, step{"job " + o.Replay.Name, func() error {
			_, err := cs.BatchV1().Jobs(ns).Create(ctx, o.Replay, metav1.CreateOptions{})
			return err
		},
			func() error {
				bg := metav1.DeletePropagationBackground
				if err := cs.BatchV1().Jobs(ns).Delete(ctx, o.Replay.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
					return err
				}
				_, err := cs.BatchV1().Jobs(ns).Create(ctx, o.Replay, metav1.CreateOptions{})
				return err
			}})
	}
	steps = append([]step{{"namespace " + ns, func() error {
		_, err := cs.CoreV1().Namespaces().Create(ctx, o.Namespace, metav1.CreateOptions{})
		return err
	},
		func() error { return nil }}}, steps...)
	for _, s := range steps {
		err := s.create()
		if apierrors.IsAlreadyExists(err) {
			err = s.update()
		}
		if err != nil {
			return fmt.Errorf("deploy %s: %w", s.what, err)
		}
	}
	return nil
}

type step = struct {
	what   string
	create func() error
	update func() error
}

func deploymentStep(ctx context.Context, cs kubernetes.Interface, d *appsv1.Deployment) step {
	api := cs.AppsV1().Deployments(d.Namespace)
	return step{"deployment " + d.Name,
		func() error { _, err := api.Create(ctx, d, metav1.CreateOptions{}); return err },
		func() error { _, err := api.Update(ctx, d, metav1.UpdateOptions{}); return err }}
}

func serviceStep(ctx context.Context, cs kubernetes.Interface, s *corev1.Service) step {
	api := cs.CoreV1().Services(s.Namespace)
	return step{"service " + s.Name,
		func() error {
			// A real API server allocates a NodePort before it looks for
			// the name: creating a Service that exists fails as "port
			// already allocated", not as AlreadyExists.
			if _, err := api.Get(ctx, s.Name, metav1.GetOptions{}); err == nil {
				return apierrors.NewAlreadyExists(corev1.Resource("services"), s.Name)
			}
			_, err := api.Create(ctx, s, metav1.CreateOptions{})
			return err
		},
		func() error {
			old, err := api.Get(ctx, s.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			// The server's own: the version, and the addresses it gave.
			s.ResourceVersion, s.Spec.ClusterIP, s.Spec.ClusterIPs = old.ResourceVersion, old.Spec.ClusterIP, old.Spec.ClusterIPs
			_, err = api.Update(ctx, s, metav1.UpdateOptions{})
			return err
		}}
}

// Teardown deletes the namespace and everything in it, and waits until it
// is gone: the next candidate's Service needs the same NodePort, which
// stays taken while the old one is terminating.
func Teardown(ctx context.Context, cs kubernetes.Interface, namespace string) error {
	bg := metav1.DeletePropagationBackground
	err := cs.CoreV1().Namespaces().Delete(ctx, namespace, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("tear down namespace %s: %w", namespace, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		_, err := cs.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if !wait.For(ctx, time.Second) {
			return fmt.Errorf("tear down namespace %s: still terminating after 3 minutes", namespace)
		}
	}
}

// Restart is one restart of a container, as the kubelet reports it.
type Restart struct {
	Pod, Container string
	Count          int32
	Reason         string // "OOMKilled", "Error", …
	ExitCode       int32
	At             time.Time // when the last one ended
}

// Restarts reads the candidate's pods' restarts and why their last
// container ended (OOMKilled, Error …).
func Restarts(ctx context.Context, cs kubernetes.Interface, namespace string) ([]Restart, error) {
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=" + ProxyName})
	if err != nil {
		return nil, fmt.Errorf("list proxy pods: %w", err)
	}
	var out []Restart
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			if c.RestartCount == 0 {
				continue
			}
			r := Restart{Pod: p.Name, Container: c.Name, Count: c.RestartCount}
			if t := c.LastTerminationState.Terminated; t != nil {
				r.Reason, r.ExitCode, r.At = t.Reason, t.ExitCode, t.FinishedAt.Time
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// JobDone says whether the replay Job has finished, and how many shards
// failed.
func JobDone(ctx context.Context, cs kubernetes.Interface, namespace string) (done bool, failed int32, err error) {
	j, err := cs.BatchV1().Jobs(namespace).Get(ctx, ReplayName, metav1.GetOptions{})
	if err != nil {
		return false, 0, fmt.Errorf("replay job: %w", err)
	}
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true, j.Status.Failed, nil
		}
	}
	return false, j.Status.Failed, nil
}

// Collect merges the shards' results from the shared directory into out;
// every one of the N shards must be there. more, if given, adds records
// of its own (the candidate's).
func Collect(ctx context.Context, dir string, shards int, out string, more func(replay.RecordWriter) error) (*replay.Summary, error) {
	files, err := filepath.Glob(filepath.Join(dir, "shard-*.results"))
	if err != nil {
		return nil, err
	}
	have := map[int]string{}
	for _, f := range files {
		i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "shard-"), ".results"))
		if err == nil {
			have[i] = f
		}
	}
	var missing []string
	var in []string
	for i := range shards {
		if f, ok := have[i]; ok {
			in = append(in, f)
		} else {
			missing = append(missing, strconv.Itoa(i))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("collect results from %s: shard %s of %d wrote none (see its pod's log)", dir, strings.Join(missing, ", "), shards)
	}
	if len(have) > shards {
		var extra []int
		for i := range have {
			if i >= shards {
				extra = append(extra, i)
			}
		}
		sort.Ints(extra)
		return nil, fmt.Errorf("collect results from %s: shard files beyond %d (%v): a directory left from another run?", dir, shards, extra)
	}
	if _, err := os.Stat(out); err == nil {
		return nil, errors.New("collect results: " + out + " exists")
	}
	return replay.MergeAnd(ctx, out, false, more, in...)
}
