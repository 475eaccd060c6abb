//go:build !tapimage

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/hubreplay/hubreplay/internal/version"
	"github.com/hubreplay/hubreplay/kindcluster"
	"github.com/hubreplay/hubreplay/tap"
	"github.com/hubreplay/hubreplay/trace"
)

func newTapCmd() *cobra.Command {
	c := &tapCmd{}
	cmd := &cobra.Command{
		Use:   "tap -o TRACE [--namespace NS] [--pod NAME] [--duration 1h]",
		Short: "Record the production proxy's traffic from inside its pod, anonymized there, into a local trace",
		Long: `tap records a z2jh proxy where it runs, from the operator's machine, with
the operator's kubeconfig (the same access as kubectl debug):

  1. it finds the proxy pod (z2jh: component=proxy in --namespace; or --pod);
  2. it adds an ephemeral container to it, as 'kubectl debug --target=chp'
     does: the pod's network, root with NET_RAW and NET_ADMIN, image --image;
  3. there, 'hubreplay capture --iface any' records the proxy's public and
     API ports (--port, --api-port) and anonymizes every record inside the
     pod, with a random key that never leaves it;
  4. the trace comes back over the API, as the container's output followed
     like 'kubectl logs -f', into TRACE, with progress (records, MB, kernel
     drops) on stderr;
  5. it stops at --duration (the capture in the pod stops by itself then) or
     on Ctrl-C: an exec into the container signals the capture, which ends
     its trace, and TRACE gets it whole (if the exec is refused, TRACE is
     closed whole here and the capture in the pod stops at --duration: an
     ephemeral container cannot be removed).

Raw packets never leave the pod. The container stays in the pod's spec
(Kubernetes keeps ephemeral containers) until the pod is replaced.

It needs, in the namespace: get and list pods, update pods/ephemeralcontainers,
get pods/log, create pods/exec (to stop the capture on Ctrl-C). Where the
cluster refuses ephemeral containers (a policy, RBAC, an old API server),
tap says so and prints the alternatives: the same
capture as a sidecar of the proxy Deployment, or as a pod with hostNetwork on
the proxy's node, read back with 'hubreplay tap --stdin'.

The image must be pullable from the cluster: build hubreplay's tap image
(capture only, see Dockerfile.tap) and push it to a registry the cluster
uses, then give it as --image.`,
		Example: `  hubreplay tap --namespace jhub --image registry.example.edu/hubreplay-tap:v1 --duration 90m -o lecture.trace
  kubectl -n jhub logs -f deploy/proxy -c hubreplay-tap | hubreplay tap --stdin -o lecture.trace`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVarP(&c.out, "output", "o", "", "the trace file to write (required; must not exist unless --force)")
	f.BoolVar(&c.force, "force", false, "replace the output file if it exists")
	f.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&c.context, "context", "", "kubeconfig context (default: the current one)")
	f.StringVarP(&c.o.Namespace, "namespace", "n", "", "the JupyterHub release's namespace (default: the context's)")
	f.StringVar(&c.o.Pod, "pod", "", "the proxy pod's name (default: the running pod with --selector)")
	f.StringVar(&c.o.Selector, "selector", "component=proxy", "how to find the proxy pod (z2jh's label)")
	f.StringVar(&c.o.Target, "container", "chp", "the proxy's container in the pod")
	f.StringVar(&c.o.Image, "image", tap.DefaultImage(version.String()), "the tap image, pullable from the cluster (see Dockerfile.tap)")
	f.StringVar(&c.o.Iface, "iface", "any", "the pod's interface to capture on")
	f.UintSliceVar(&c.ports, "port", []uint{8000}, "the proxy's public port(s)")
	f.UintSliceVar(&c.apiPorts, "api-port", []uint{8001}, "the proxy's REST API port(s)")
	f.DurationVar(&c.o.Duration, "duration", time.Hour, "how long to capture; the capture in the pod stops by itself then")
	f.DurationVar(&c.startup, "startup-timeout", 3*time.Minute, "how long the tap container may take to start (image pull)")
	f.DurationVar(&c.o.Ring, "ring", 0, "a flight recorder in the pod: keep the last this much (e.g. 30m) and send it when the proxy's process exits (crash, OOM kill) and at the end, each into TRACE's name with the time")
	f.StringVar(&c.o.Watch, "watch", "configurable-http-proxy", "with --ring: the proxy's process, by a word of its command line")
	f.BoolVar(&c.stdin, "stdin", false, "read the stream from standard input instead (a sidecar's or a node pod's output, piped from kubectl logs -f)")
	return cmd
}

type tapCmd struct {
	o                        tap.Options
	out, kubeconfig, context string
	ports, apiPorts          []uint
	force, stdin             bool
	startup                  time.Duration

	mu      sync.Mutex // the progress line and the lines between
	show    *captureDisplay
	stopped atomic.Bool // Ctrl-C stopped the capture in the pod
}

// Tests stand in for the cluster: a fake clientset, and the log stream of
// a capture they run themselves.
var (
	tapTestLogs func(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error)
	tapTestExec tap.Execer
)

func (c *tapCmd) run(cmd *cobra.Command) error {
	if c.out == "" {
		return usageError{errors.New("tap needs -o TRACE, the file to write")}
	}
	if _, err := os.Stat(c.out); err == nil && !c.force {
		return usageError{fmt.Errorf("%s exists: give another -o, or --force", c.out)}
	}
	if c.o.Duration <= 0 {
		return usageError{fmt.Errorf("--duration %s: give how long to capture, e.g. 90m", c.o.Duration)}
	}
	c.o.Ports, c.o.APIPorts = toPorts(c.ports), toPorts(c.apiPorts)
	stderr := cmd.ErrOrStderr()
	ctx := cmd.Context()
	if c.stdin {
		return c.receive(ctx, stderr, io.NopCloser(cmd.InOrStdin()), "standard input")
	}

	client, rc, ns, err := k8sClient(c.kubeconfig, c.context)
	if err != nil {
		return usageError{err}
	}
	if c.o.Namespace == "" {
		c.o.Namespace = ns
	}
	tp := &tap.Tapper{Client: client, Logs: tapTestLogs, Exec: kindcluster.SPDYExec{Config: rc, Client: client}}
	if tapTestExec != nil {
		tp.Exec = tapTestExec
	}
	pod, err := tp.FindPod(ctx, c.o)
	if err != nil {
		return err
	}
	ec := tap.EphemeralContainer(c.o)
	fmt.Fprintf(stderr, "tap: adding container %s (image %s) to pod %s/%s, next to %s\n", ec.Name, ec.Image, pod.Namespace, pod.Name, ec.TargetContainerName)
	if err := tp.Attach(ctx, pod, ec); err != nil {
		var na *tap.NotAllowedError
		if errors.As(err, &na) {
			fmt.Fprint(stderr, alternatives(pod, ec))
		}
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, c.startup)
	defer cancel()
	if err := tp.WaitRunning(startCtx, pod.Namespace, pod.Name, ec.Name); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "tap: capturing in the pod for up to %s (Ctrl-C stops here)\n", c.o.Duration)
	stream, err := tp.Follow(ctx, pod.Namespace, pod.Name, ec.Name)
	if err != nil {
		return err
	}
	defer stream.Close()
	// The stream ends when the capture in the pod stops at --duration; a
	// minute more covers its last flush and the log's delay. Ctrl-C stops
	// the capture in the pod (an exec signals it), and its stream is read
	// to its end: the trace's last records and its closing stats.
	rctx, stop := context.WithTimeout(context.WithoutCancel(ctx), c.o.Duration+time.Minute)
	defer stop()
	go func() {
		select {
		case <-rctx.Done():
			return
		case <-ctx.Done():
		}
		c.say(stderr, "tap: stopping the capture in the pod")
		sctx, cancel := context.WithTimeout(rctx, tapStopWait)
		defer cancel()
		if err := tp.Signal(sctx, pod.Namespace, pod.Name, ec.Name, "INT"); err != nil {
			c.say(stderr, fmt.Sprintf("tap: %v: stopped here; the capture in the pod stops by itself at --duration", err))
			stop()
			return
		}
		c.stopped.Store(true)
		<-sctx.Done() // the stream's end, or this long at most
		stop()
	}()
	// The proxy's restarts, as the kubelet tells them: why a flight
	// recorder's dump came, or what happened during a capture. Without a
	// process to watch in the pod (--watch ""), a restart seen here is
	// the flight recorder's trigger.
	go tp.WatchRestarts(rctx, pod.Namespace, pod.Name, c.o.Target, func(r tap.Restart) {
		c.say(stderr, fmt.Sprintf("tap: container %s restarted (restart %d: %s, exit %d, at %s)", c.o.Target, r.Count, r.Reason, r.ExitCode, r.At.Local().Format("15:04:05")))
		if c.o.Ring > 0 && c.o.Watch == "" {
			if err := tp.Signal(rctx, pod.Namespace, pod.Name, ec.Name, "USR1"); err != nil {
				c.say(stderr, fmt.Sprintf("tap: the flight recorder was not triggered: %v", err))
			}
		}
	})
	return c.receive(rctx, stderr, stream, fmt.Sprintf("pod %s/%s", pod.Namespace, pod.Name))
}

// tapStopWait bounds how long a stopped capture may take to send its end.
const tapStopWait = 30 * time.Second

// receive writes the stream's trace to -o with progress.
// say prints a line between the progress lines.
func (c *tapCmd) say(stderr io.Writer, line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.show != nil {
		c.show.finish()
	}
	fmt.Fprintln(stderr, line)
}

func (c *tapCmd) receive(ctx context.Context, stderr io.Writer, stream io.ReadCloser, from string) error {
	show := newCaptureDisplay(stderr, true)
	c.mu.Lock()
	c.show = show
	c.mu.Unlock()
	var wrote []string
	p, err := tap.Receive(ctx, stream, func(h trace.Header, n int) (*trace.Writer, error) {
		path := c.out
		switch {
		case c.o.Ring > 0:
			path = stampedName(c.out, time.Now())
		case n > 0:
			path = fmt.Sprintf("%s-%d.trace", strings.TrimSuffix(c.out, ".trace"), n+1)
		}
		w, err := trace.Create(path, h, &trace.WriterOptions{Overwrite: c.force})
		if err == nil {
			wrote = append(wrote, path)
			if c.o.Ring > 0 {
				c.say(stderr, "tap: the flight recorder in the pod wrote its recording out: into "+path)
			}
		}
		return w, err
	}, func(p tap.Progress) {
		line := fmt.Sprintf("tap %s: %d records, %.1f MB, %d kernel drops", p.Captured.Truncate(time.Second), p.Records, float64(p.Bytes)/1e6, p.KernelDrops)
		c.mu.Lock()
		show.lineUpdate(line)
		c.mu.Unlock()
	})
	c.mu.Lock()
	show.finish()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	how := "the capture ended"
	switch {
	case c.stopped.Load():
		how = "stopped on Ctrl-C, the capture in the pod with it"
	case ctx.Err() != nil:
		how = "stopped here; the capture in the pod stops by itself at --duration"
	}
	if len(wrote) == 0 {
		return fmt.Errorf("tap: %s sent no trace (%s)", from, how)
	}
	fmt.Fprintf(stderr, "wrote %s: %d records over %s from %s, %d kernel drops (%s)\n", strings.Join(wrote, ", "), p.Records, p.Captured.Round(time.Millisecond), from, p.KernelDrops, how)
	return nil
}

// alternatives says what to do where ephemeral containers are refused: the
// same capture as a sidecar of the proxy Deployment, or as a pod on the
// proxy's node in the host's network.
func alternatives(pod *corev1.Pod, ec corev1.EphemeralContainer) string {
	sidecar := corev1.Container{Name: "hubreplay-tap", Image: ec.Image, Command: ec.Command, SecurityContext: ec.SecurityContext}
	patch, _ := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/template/spec/containers/-", "value": sidecar}})
	node := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "hubreplay-tap", Namespace: pod.Namespace},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName, HostNetwork: true, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "hubreplay-tap", Image: ec.Image, Command: ec.Command, SecurityContext: ec.SecurityContext}}},
	}
	manifest, _ := yaml.Marshal(node)
	return fmt.Sprintf(`
Alternatives:
  a) A sidecar in the proxy pod (restarts the proxy; a helm upgrade removes it):
       kubectl -n %[1]s patch deployment proxy --type=json -p '%[2]s'
       kubectl -n %[1]s logs -f deploy/proxy -c hubreplay-tap | hubreplay tap --stdin -o TRACE
  b) A pod in the host's network on the proxy's node (%[3]s), where policy allows
     hostNetwork (on the node, 'any' also sees the pod's traffic on the bridge:
     give the pod's veth as --iface where duplicates show):
%[4]s       kubectl apply -f tap-pod.yaml && kubectl -n %[1]s logs -f hubreplay-tap | hubreplay tap --stdin -o TRACE
`, pod.Namespace, patch, pod.Spec.NodeName, indent(string(manifest), "       "))
}

func indent(s, by string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(by + l + "\n")
	}
	return b.String()
}
