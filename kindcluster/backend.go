package kindcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hubreplay/hubreplay/internal/wait"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

// Recorder puts the candidate's side of a run into its results file, in
// the records a comparison reads (compare.CandidateWriter is one).
type Recorder interface {
	Sample(proxy.Sample)
	Exit(proxy.Exit)
	Candidate(role, spec, version, backend, limit string, settle time.Duration)
	Err() error
}

// Backend runs candidates in a kind cluster, one after the other, each in
// a namespace of its own: the candidate Deployment, the fixtures, and the
// replay shards as an Indexed Job.
type Backend struct {
	// Cluster is the kind cluster (nil in a cluster of the operators'
	// own): images are loaded into its nodes, and its work directory is
	// the workspace unless Work says otherwise.
	Cluster *Cluster
	// Work is how the trace goes in and the results come out.
	Work Workspace
	// Name is the backend's name in the results ("kind" by default).
	Name   string
	Client kubernetes.Interface
	// Stats reaches the kubelets (KubeletStats in a cluster).
	Stats Stats
	// Image is hubreplay's image, loaded into the nodes.
	Image string
	// Trace is the trace on the host; it is copied into the work directory.
	Trace  string
	Play   []string
	Shards int
	Values Values
	// CheckInterval is JupyterHub's check_routes interval (trace time).
	CheckInterval time.Duration
	// Settle is how long the candidate stands idle after the replay.
	Settle time.Duration
	// Lead is how far ahead of the candidate's readiness the shards'
	// common start is set: time for the fixtures' and the shards' pods to
	// start and to read the trace (default 30 s).
	Lead time.Duration
	// Timeout bounds the waits for the Deployments (default 5 min).
	Timeout time.Duration
	// Poll is the sampling interval (default 1 s).
	Poll time.Duration
	// Keep leaves each namespace in place after its run.
	Keep bool
	// NewRecorder makes the Recorder for a results file.
	NewRecorder func(w replay.RecordWriter, start time.Time) Recorder
	// Say, if set, hears the run's progress as lines for people.
	Say func(format string, args ...any)
	Log *slog.Logger
}

func (b *Backend) say(format string, args ...any) {
	if b.Say != nil {
		b.Say(format, args...)
	}
}

func (b *Backend) log() *slog.Logger {
	if b.Log == nil {
		return slog.Default()
	}
	return b.Log
}

func or(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// CandidateImage is the image a candidate runs as in a cluster, and its
// command when the image's own is not configurable-http-proxy.
func CandidateImage(s proxy.Spec) (string, error) {
	switch s.Kind {
	case proxy.KindNPM:
		// The project publishes an image per release.
		return "quay.io/jupyterhub/configurable-http-proxy:" + s.Version, nil
	case proxy.KindImage:
		return s.Image, nil
	case proxy.KindPath:
		return "", fmt.Errorf("candidate %s: in a cluster a checkout runs as an image: build it (docker build -t my-chp:pr %s) and give image:my-chp:pr", s, s.Path)
	}
	return "", fmt.Errorf("candidate %s: a cmd: candidate runs only on the local backend", s)
}

func slug(role string) string {
	r := strings.NewReplacer("'", "-noise", "_", "-")
	return strings.ToLower(r.Replace(role))
}

// RunCandidate stages one candidate, replays the trace against it, and
// writes the merged results with the candidate's samples and restarts.
func (b *Backend) RunCandidate(ctx context.Context, role string, spec proxy.Spec, results string) error {
	image, err := CandidateImage(spec)
	if err != nil {
		return err
	}
	if spec.Kind == proxy.KindImage && b.Cluster != nil {
		// A local build (a PR's) is not in any registry: the nodes get it.
		// Elsewhere the cluster pulls it, like any image.
		if err := b.Cluster.LoadImage(ctx, image); err != nil {
			return err
		}
	}
	work := b.workspace()
	traceName := filepath.Base(b.Trace)
	ns := "hubreplay-" + slug(role)
	resDir := path.Join("results", slug(role))
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	st := &Staging{Namespace: ns, Image: b.Image, Candidate: image, Token: hex.EncodeToString(tok), Values: b.Values,
		Trace: traceName, Results: resDir, Shards: b.Shards, Play: b.Play, StartAt: time.Now(), CheckInterval: b.CheckInterval,
		Work: work.Volume(), NoNodePort: b.Cluster == nil}
	// First the candidate, until it is ready (its image may take a while
	// to pull); then the fixtures and the shards, with a common start far
	// enough ahead for their pods to start and read the trace.
	objs, err := st.Build()
	if err != nil {
		return err
	}
	objs.Fixtures, objs.Replay = nil, nil
	if err := Apply(ctx, b.Client, objs); err != nil {
		return err
	}
	if !b.Keep {
		defer func() {
			if err := Teardown(context.WithoutCancel(ctx), b.Client, ns); err != nil {
				b.log().Warn("teardown", "namespace", ns, "err", err)
			}
		}()
	}
	// The namespace exists now: the workspace can go in it.
	if err := work.Stage(ctx, ns, b.Trace, traceName, resDir); err != nil {
		return err
	}
	b.say("%s: candidate %s (%s) deployed; waiting for it to be ready", ns, spec, image)
	if err := b.waitAvailable(ctx, ns, ProxyName); err != nil {
		return err
	}
	st.StartAt = time.Now().Add(or(b.Lead, 30*time.Second))
	b.say("%s: candidate ready; fixtures and %d replay shards start at %s", ns, b.Shards, st.StartAt.Format("15:04:05"))
	start := st.StartAt
	if objs, err = st.Build(); err != nil {
		return err
	}
	if err := Apply(ctx, b.Client, objs); err != nil {
		return err
	}
	if err := b.waitAvailable(ctx, ns, FixturesName); err != nil {
		return err
	}
	var samples []proxy.Sample
	poll := time.NewTicker(or(b.Poll, time.Second))
	defer poll.Stop()
	for {
		if s, err := b.sample(ctx, ns); err == nil {
			samples = append(samples, s)
		} else {
			b.log().Debug("sample", "err", err)
		}
		done, failed, err := JobDone(ctx, b.Client, ns)
		if err != nil {
			return err
		}
		if n := len(samples); n > 0 && n%30 == 0 {
			s := samples[n-1]
			b.say("%s: replaying; candidate up %v, rss %.1f MiB, %d sockets, %d starts", ns, s.Up, float64(s.RSS)/(1<<20), s.SocketFDs, s.Starts)
		}
		if done {
			if failed > 0 {
				b.log().Warn("replay shards failed", "namespace", ns, "failed", failed)
			}
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while replaying in %s: %w", ns, ctx.Err())
		case <-poll.C:
		}
	}
	b.say("%s: replay done; candidate stands idle for %s", ns, or(b.Settle, 10*time.Second))
	if !wait.For(ctx, or(b.Settle, 10*time.Second)) {
		return ctx.Err()
	}
	if s, err := b.sample(ctx, ns); err == nil {
		samples = append(samples, s)
	}
	restarts, err := Restarts(ctx, b.Client, ns)
	if err != nil {
		return err
	}
	hostRes, err := work.Results(ctx, ns, resDir)
	if err != nil {
		return err
	}
	b.say("%s: merging %d shards' results into %s", ns, b.Shards, results)
	version := image[strings.LastIndex(image, ":")+1:]
	limit := "none"
	if q, ok := b.Values.Proxy.CHP.Resources.Limits[corev1.ResourceMemory]; ok {
		limit = "pod memory limit " + q.String()
	}
	_, err = Collect(ctx, hostRes, b.Shards, results, func(w replay.RecordWriter) error {
		rec := b.NewRecorder(w, start)
		for _, s := range samples {
			rec.Sample(s)
		}
		for _, r := range restarts {
			for range r.Count {
				rec.Exit(exitOf(r))
			}
		}
		rec.Candidate(role, spec.Raw, version, b.name(), limit, or(b.Settle, 10*time.Second))
		return rec.Err()
	})
	return err
}

// workspace is Work, or the kind cluster's work directory.
func (b *Backend) workspace() Workspace {
	if b.Work != nil {
		return b.Work
	}
	return HostDir{Dir: b.Cluster.WorkDir}
}

func (b *Backend) name() string {
	if b.Name != "" {
		return b.Name
	}
	return "kind"
}

// exitOf turns the kubelet's word on a restart into an exit.
func exitOf(r Restart) proxy.Exit {
	e := proxy.Exit{At: r.At, Code: int(r.ExitCode), OOM: r.Reason == "OOMKilled"}
	switch {
	case e.OOM:
		e.Cause = "OOM-killed at the pod's memory limit"
	case r.Reason != "":
		e.Cause = fmt.Sprintf("exited with status %d (%s)", r.ExitCode, r.Reason)
	default:
		e.Cause = fmt.Sprintf("exited with status %d", r.ExitCode)
	}
	return e
}

// sample reads the candidate pod's figures from its node's kubelet.
func (b *Backend) sample(ctx context.Context, ns string) (proxy.Sample, error) {
	pods, err := b.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=" + ProxyName})
	if err != nil {
		return proxy.Sample{}, err
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "" {
			continue
		}
		s, err := Sample(ctx, b.Stats, p.Spec.NodeName, ns, p.Name, "chp")
		for _, c := range p.Status.ContainerStatuses {
			s.Starts = int(c.RestartCount) + 1
		}
		return s, err
	}
	return proxy.Sample{At: time.Now()}, nil // down: no pod running
}

// waitAvailable waits for a Deployment's pod to be ready.
func (b *Backend) waitAvailable(ctx context.Context, ns, name string) error {
	ctx, cancel := context.WithTimeout(ctx, or(b.Timeout, 5*time.Minute))
	defer cancel()
	for {
		d, err := b.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && available(d) {
			return nil
		}
		if !wait.For(ctx, or(b.Poll, time.Second)) {
			return fmt.Errorf("deployment %s/%s not available within %s (kubectl -n %s describe deployment %s)", ns, name, or(b.Timeout, 5*time.Minute), ns, name)
		}
	}
}

func available(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			return d.Status.AvailableReplicas > 0
		}
	}
	return false
}

// copyInto copies a file unless it is already there.
func copyInto(src, dst string) error {
	if a, b := filepath.Clean(src), filepath.Clean(dst); a == b {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy trace: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copy trace: %w", err)
	}
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("copy trace: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy trace to %s: %w", dst, err)
	}
	return out.Close()
}
