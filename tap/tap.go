// Package tap records a production proxy's traffic where it runs: it adds
// an ephemeral container to the proxy's pod (what kubectl debug --target
// does: the pod's network namespace, NET_RAW), runs a live capture there
// that anonymizes inside the pod, and follows the container's log stream,
// which carries the trace (tap/wire), into a local trace file. Raw packets
// never leave the pod; the anonymization key is random and stays there.
package tap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hubreplay/hubreplay/internal/wait"
	"github.com/hubreplay/hubreplay/tap/wire"
	"github.com/hubreplay/hubreplay/trace"
)

// Options say which pod to tap and what to run in it.
type Options struct {
	Namespace string
	// Pod names the pod; empty finds it by Selector (z2jh's proxy pod).
	Pod      string
	Selector string
	// Target is the container whose processes the tap shares (z2jh: chp).
	Target string
	// Image runs the capture: hubreplay's tap image.
	Image string
	// Iface is the pod's interface to capture on ("any": all of them).
	Iface           string
	Ports, APIPorts []uint16
	// Duration bounds the capture inside the pod: it stops by itself then,
	// whether or not anyone still reads it.
	Duration time.Duration
	// Name is the ephemeral container's name.
	Name string
	// Ring makes the capture in the pod a flight recorder keeping this
	// much; it streams a trace of the last Ring each time Watch's process
	// (the proxy: the pod shares the target's processes) exits, and at
	// the end.
	Ring  time.Duration
	Watch string
}

// Defaults are z2jh's: the proxy pod is component=proxy, its container chp,
// its public port 8000 and API port 8001.
func (o Options) withDefaults() Options {
	if o.Selector == "" {
		o.Selector = "component=proxy"
	}
	if o.Target == "" {
		o.Target = "chp"
	}
	if o.Iface == "" {
		o.Iface = "any"
	}
	if len(o.Ports) == 0 {
		o.Ports = []uint16{8000}
	}
	if len(o.APIPorts) == 0 {
		o.APIPorts = []uint16{8001}
	}
	if o.Duration == 0 {
		o.Duration = time.Hour
	}
	if o.Name == "" {
		o.Name = "hubreplay-tap-" + strconv.FormatInt(time.Now().Unix(), 36)
	}
	return o
}

// Command is what runs in the pod: a live capture, anonymized there,
// written to standard output as base64 lines.
func (o Options) Command() []string {
	o = o.withDefaults()
	cmd := []string{"/hubreplay", "capture", "--iface", o.Iface, "--port", ports(o.Ports), "--api-port", ports(o.APIPorts),
		"--max-duration", o.Duration.String(), "--source-name", "tap:" + o.Iface, "-o", "-", "--base64"}
	if o.Ring > 0 {
		cmd = append(cmd, "--ring", o.Ring.String())
		if o.Watch != "" {
			cmd = append(cmd, "--watch", o.Watch)
		}
	}
	return cmd
}

func ports(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// EphemeralContainer is the container the tap adds to the pod: the
// target's network and processes, root with NET_RAW and NET_ADMIN (an
// AF_PACKET ring needs both), nothing mounted.
func EphemeralContainer(o Options) corev1.EphemeralContainer {
	o = o.withDefaults()
	root, no := int64(0), false
	return corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name:            o.Name,
			Image:           o.Image,
			Command:         o.Command(),
			ImagePullPolicy: corev1.PullIfNotPresent,
			SecurityContext: &corev1.SecurityContext{
				RunAsUser:    &root,
				RunAsNonRoot: &no,
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW", "NET_ADMIN"}, Drop: []corev1.Capability{"ALL"}},
			},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		},
		TargetContainerName: o.Target,
	}
}

// DefaultImage is the tap image of hubreplay version v, as Dockerfile.tap
// builds it and the README pushes it: hubreplay-tap:v, the version made a
// valid image tag.
func DefaultImage(v string) string {
	tag := []byte(v)
	for i, c := range tag {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			tag[i] = '-'
		}
	}
	if len(tag) == 0 || tag[0] == '.' || tag[0] == '-' {
		tag = append([]byte("v"), tag...)
	}
	return "hubreplay-tap:" + string(tag[:min(len(tag), 128)])
}

// Tapper talks to the cluster.
type Tapper struct {
	Client kubernetes.Interface
	// Logs opens a container's log stream, followed; nil: through Client.
	Logs func(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error)
	// Poll is how often WaitRunning looks (default 1 s).
	Poll time.Duration
	// Exec runs a command in a container, as kubectl exec (Signal's way
	// in); kindcluster.SPDYExec does it through the API server.
	Exec Execer
}

// Execer runs a command in a pod's container.
type Execer interface {
	Exec(ctx context.Context, namespace, pod, container string, cmd []string, stdin io.Reader, stdout io.Writer) error
}

// Signal sends the capture in the tap container a signal through an exec
// there: "INT" ends its trace and stops it (Ctrl-C at the operator's end:
// an ephemeral container cannot be removed, so its process is told to
// stop); "USR1" makes a flight recorder write its window out (a restart
// of the proxy seen through the API).
func (t *Tapper) Signal(ctx context.Context, namespace, pod, container, sig string) error {
	if t.Exec == nil {
		return errors.New("signal the capture: no way to exec into the pod")
	}
	var out strings.Builder
	if err := t.Exec.Exec(ctx, namespace, pod, container, []string{"/hubreplay", "capture-signal", sig}, nil, &out); err != nil {
		return fmt.Errorf("signal the capture in %s/%s (container %s): %w", namespace, pod, container, err)
	}
	return nil
}

// FindPod finds the pod to tap: o.Pod, or the one running pod o.Selector
// matches; it must have the target container.
func (t *Tapper) FindPod(ctx context.Context, o Options) (*corev1.Pod, error) {
	o = o.withDefaults()
	var pod *corev1.Pod
	if o.Pod != "" {
		p, err := t.Client.CoreV1().Pods(o.Namespace).Get(ctx, o.Pod, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("tap: find pod %s in namespace %s: %w", o.Pod, o.Namespace, err)
		}
		pod = p
	} else {
		list, err := t.Client.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: o.Selector})
		if err != nil {
			return nil, fmt.Errorf("tap: find the proxy pod (%s) in namespace %s: %w", o.Selector, o.Namespace, err)
		}
		var running []corev1.Pod
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running = append(running, p)
			}
		}
		switch len(running) {
		case 0:
			return nil, fmt.Errorf("tap: no running pod with %s in namespace %s (is the JupyterHub release there? --namespace, or --pod NAME)", o.Selector, o.Namespace)
		case 1:
			pod = &running[0]
		default:
			names := make([]string, len(running))
			for i, p := range running {
				names[i] = p.Name
			}
			return nil, fmt.Errorf("tap: %d running pods with %s in namespace %s (%s): choose one with --pod", len(running), o.Selector, o.Namespace, strings.Join(names, ", "))
		}
	}
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if !slices.Contains(names, o.Target) {
		return nil, fmt.Errorf("tap: pod %s has no container %q (it has %s): choose one with --container", pod.Name, o.Target, strings.Join(names, ", "))
	}
	return pod, nil
}

// NotAllowedError says the cluster refused the ephemeral container, and
// what the operator can do instead.
type NotAllowedError struct {
	Pod string
	Err error
}

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("tap: the cluster did not let hubreplay add a container to pod %s: %v", e.Pod, e.Err)
}

func (e *NotAllowedError) Unwrap() error { return e.Err }

// Attach adds the ephemeral container to pod.
func (t *Tapper) Attach(ctx context.Context, pod *corev1.Pod, ec corev1.EphemeralContainer) error {
	p := pod.DeepCopy()
	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, ec)
	_, err := t.Client.CoreV1().Pods(pod.Namespace).UpdateEphemeralContainers(ctx, pod.Name, p, metav1.UpdateOptions{})
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err), apierrors.IsNotFound(err), apierrors.IsMethodNotSupported(err), apierrors.IsInvalid(err):
		// RBAC or a policy said no, or the API server predates
		// ephemeral containers (the subresource is missing).
		return &NotAllowedError{Pod: pod.Name, Err: err}
	}
	return fmt.Errorf("tap: add container %s to pod %s: %w", ec.Name, pod.Name, err)
}

// WaitRunning waits until the ephemeral container runs, and says why when
// it will not (an image that cannot be pulled, a capture that exited).
func (t *Tapper) WaitRunning(ctx context.Context, namespace, pod, name string) error {
	poll := t.Poll
	if poll == 0 {
		poll = time.Second
	}
	for {
		p, err := t.Client.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("tap: wait for container %s: %w", name, err)
		}
		for _, s := range p.Status.EphemeralContainerStatuses {
			if s.Name != name {
				continue
			}
			switch {
			case s.State.Running != nil:
				return nil
			case s.State.Terminated != nil:
				tm := s.State.Terminated
				return fmt.Errorf("tap: container %s exited (%s, status %d): %s", name, tm.Reason, tm.ExitCode, strings.TrimSpace(tm.Message))
			case s.State.Waiting != nil && strings.Contains(s.State.Waiting.Reason, "Err") || s.State.Waiting != nil && strings.Contains(s.State.Waiting.Reason, "BackOff"):
				return fmt.Errorf("tap: container %s cannot start (%s): %s; is --image pullable from the cluster?", name, s.State.Waiting.Reason, s.State.Waiting.Message)
			}
		}
		if !wait.For(ctx, poll) {
			return fmt.Errorf("tap: wait for container %s to run: %w", name, ctx.Err())
		}
	}
}

// Follow opens the ephemeral container's log stream.
func (t *Tapper) Follow(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error) {
	if t.Logs != nil {
		return t.Logs(ctx, namespace, pod, container)
	}
	rc, err := t.Client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("tap: follow container %s's output: %w", container, err)
	}
	return rc, nil
}

// Progress is what has come back so far.
type Progress struct {
	Records     uint64
	Bytes       int64 // of trace, as the pod wrote it
	KernelDrops uint64
	Captured    time.Duration // capture time covered
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// Receive reads the traces the pod streams (base64 lines): one for a
// capture, one per dump for a flight recorder (--ring). Each one's records
// go to a local trace that create opens (n counts from 0) once its header
// has come. It returns when the stream ends (the capture in the pod
// stopped) or ctx is done (the caller's --duration, Ctrl-C); either way
// every local trace holds every record received and is closed whole.
// progress, if not nil, is called about once a second.
func Receive(ctx context.Context, stream io.ReadCloser, create func(h trace.Header, n int) (*trace.Writer, error), progress func(Progress)) (Progress, error) {
	var p Progress
	stop := context.AfterFunc(ctx, func() { stream.Close() }) // unblocks the read
	defer stop()
	wr := wire.NewReader(stream)
	last := time.Now()
	for n := 0; ; n++ {
		err := receiveOne(ctx, countingReader{wr, &p.Bytes}, func(h trace.Header) (*trace.Writer, error) { return create(h, n) }, &p, func() {
			if progress != nil && time.Since(last) >= time.Second {
				last = time.Now()
				progress(p)
			}
		})
		if err != nil || !wr.Next() {
			if progress != nil {
				progress(p)
			}
			return p, err
		}
	}
}

// receiveOne copies one trace of the stream into a local one.
func receiveOne(ctx context.Context, src io.Reader, create func(trace.Header) (*trace.Writer, error), p *Progress, tick func()) error {
	r, err := trace.NewReader(src, "the tap's stream")
	if err != nil {
		if ctx.Err() != nil {
			if p.Records == 0 {
				return fmt.Errorf("tap: stopped before the capture in the pod wrote anything: %w", ctx.Err())
			}
			return nil
		}
		return fmt.Errorf("tap: read the capture's stream: %w", err)
	}
	w, err := create(*r.Header())
	if err != nil {
		return err
	}
	var n uint64
	readErr := r.Each(context.WithoutCancel(ctx), nil, func(rec trace.Record) error {
		if _, ok := rec.(*trace.Header); ok {
			return nil // the local writer wrote it
		}
		if err := w.Write(rec); err != nil {
			return err
		}
		n++
		p.Records++
		p.Captured = max(p.Captured, rec.Time())
		if st, ok := rec.(*trace.Stats); ok {
			p.KernelDrops = st.Drops["kernel"]
		}
		tick()
		return nil
	})
	if cerr := w.Close(); cerr != nil {
		return cerr
	}
	var damage *trace.DamageError
	switch {
	case readErr == nil:
		return nil
	case ctx.Err() != nil:
		return nil // stopped here: what came is kept, whole
	case errors.As(readErr, &damage) && damage.Truncated:
		return fmt.Errorf("tap: the stream ended before the capture in the pod finished (was the container killed?); the %d records received are kept: %w", n, readErr)
	}
	return fmt.Errorf("tap: %w; the %d records received before it are kept", readErr, n)
}

// Restart is a restart of the tapped container, as the kubelet reports it.
type Restart struct {
	Count    int32
	Reason   string // OOMKilled, Error, ...
	ExitCode int32
	At       time.Time
}

// WatchRestarts reports each restart of container in the pod (a crash, an
// OOM kill) until ctx ends: the flight recorder in the pod writes its
// recording out when the proxy's process goes, and this says why.
func (t *Tapper) WatchRestarts(ctx context.Context, namespace, pod, container string, report func(Restart)) {
	poll := t.Poll
	if poll == 0 {
		poll = 2 * time.Second
	}
	last := int32(-1)
	for {
		if p, err := t.Client.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{}); err == nil {
			for _, s := range p.Status.ContainerStatuses {
				if s.Name != container {
					continue
				}
				if last >= 0 && s.RestartCount > last {
					r := Restart{Count: s.RestartCount}
					if tm := s.LastTerminationState.Terminated; tm != nil {
						r.Reason, r.ExitCode, r.At = tm.Reason, tm.ExitCode, tm.FinishedAt.Time
					}
					report(r)
				}
				last = s.RestartCount
			}
		}
		if !wait.For(ctx, poll) {
			return
		}
	}
}
