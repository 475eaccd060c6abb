package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hubreplay/hubreplay/internal/wait"
)

// Options say how to run a candidate. Zero values take the defaults.
type Options struct {
	IP string // where it listens (default 127.0.0.1)
	// Ports; 0 picks free ones, kept across restarts.
	Port, APIPort, MetricsPort int
	// DefaultTarget is the hub (the fixtures' hub stub); ErrorTarget
	// where CHP sends errors, as z2jh sets it (default DefaultTarget +
	// /hub/error).
	DefaultTarget, ErrorTarget string
	Token                      string // CONFIGPROXY_AUTH_TOKEN (random when empty)
	LogLevel                   string // default "info", as z2jh
	// MemoryLimit caps the candidate like a Kubernetes memory limit: a
	// memory cgroup where the machine lets hubreplay make one (v1, a
	// delegated v2 group, or a systemd scope: OOM kills then happen as in
	// a pod), else Node's --max-old-space-size (the heap alone; the
	// heap-limit crash instead of the OOM kill). Limit() says which.
	MemoryLimit int64
	// LimitBy forces how: "cgroup" or "node"; empty picks the cgroup
	// when the machine has one.
	LimitBy string
	// RestartDelay is how long a dead candidate stays dead, as a
	// kubelet's back-off would keep it (default 10 s, its first step).
	RestartDelay time.Duration
	SampleEvery  time.Duration // default 1 s
	ReadyTimeout time.Duration // default 30 s
	// Output receives the candidate's log lines as well (optional).
	Output io.Writer
	Log    *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.RestartDelay <= 0 {
		o.RestartDelay = 10 * time.Second
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = time.Second
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// Exit is one end of a candidate's process.
type Exit struct {
	At     time.Time     `json:"at"`
	Uptime time.Duration `json:"uptime_ns"`
	Code   int           `json:"code"`             // -1 when killed by a signal
	Signal string        `json:"signal,omitempty"` // e.g. "killed", "aborted"
	// OOM: the kernel's OOM killer ended it (memory cgroup). HeapLimit:
	// Node gave up at its heap limit ("JavaScript heap out of memory").
	OOM       bool `json:"oom,omitempty"`
	HeapLimit bool `json:"heap_limit,omitempty"`
	// Stopped: hubreplay ended it; not a failure.
	Stopped bool     `json:"stopped,omitempty"`
	Cause   string   `json:"cause"`
	Last    []string `json:"last_lines,omitempty"` // its last log lines
}

// Candidate is a running, supervised candidate proxy.
type Candidate struct {
	prog  *Program
	o     Options
	limit string // how MemoryLimit is enforced
	cg    *memCgroup
	logs  *logBook

	mu      sync.Mutex
	proc    *process // the current one
	starts  int
	samples []Sample
	exits   []Exit
	stopped bool
	oomSeen int64
	// probes are the local ports of the liveness probes' connections, and
	// when each was made: the candidate's ends of them are the sampler's,
	// not the candidate's own sockets.
	probes map[int]time.Time
	prober *http.Client

	stop context.CancelFunc
	done chan struct{}
}

// process is one run of the candidate: a child process, or a container.
type process struct {
	pid     int // in this machine's PID namespace, for /proc
	started time.Time
	kill    func(syscall.Signal)
	exited  chan struct{} // closed once the fields below are set
	code    int           // exit status; -1 when killed by a signal
	signal  string
	oom     bool // the container runtime says it was OOM-killed
}

func (p *process) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Start runs the candidate, waits until it is ready like the z2jh
// readiness probe (/_chp_healthz, or the API, or a TCP connection), and
// supervises it until ctx ends or Stop is called.
func Start(ctx context.Context, p *Program, o Options) (*Candidate, error) {
	o = o.withDefaults()
	// A free port is free when looked at: another process, or one of the
	// replay's own outgoing connections (ephemeral ports come from the
	// same range), can take it before the candidate binds it. Then the
	// candidate exits saying so, and gets fresh ports.
	for attempt := 1; ; attempt++ {
		c, err := startOnce(ctx, p, o)
		if err == nil || attempt == 3 || !errors.Is(err, errPortTaken) {
			return c, err
		}
		if o.Log != nil {
			o.Log.Warn("a port picked for the candidate was taken before it bound it; trying fresh ones", "candidate", p.Spec.Raw, "err", err)
		}
	}
}

// errPortTaken marks a candidate that exited because a port was in use.
var errPortTaken = errors.New("a port it was given was taken")

func startOnce(ctx context.Context, p *Program, o Options) (*Candidate, error) {
	var err error
	for _, port := range []*int{&o.Port, &o.APIPort, &o.MetricsPort} {
		if *port == 0 && (port != &o.MetricsPort || p.HasMetrics) {
			if *port, err = pickPort(o.IP); err != nil {
				return nil, err
			}
		}
	}
	if o.Token == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		o.Token = hex.EncodeToString(b)
	}
	if o.ErrorTarget == "" && o.DefaultTarget != "" {
		o.ErrorTarget = strings.TrimSuffix(o.DefaultTarget, "/") + "/hub/error"
	}
	c := &Candidate{prog: p, o: o, logs: newLogBook(), limit: "none", done: make(chan struct{})}
	if o.MemoryLimit > 0 && p.Spec.Kind == KindImage {
		c.limit = fmt.Sprintf("container memory limit %d MiB", o.MemoryLimit>>20)
	} else if o.MemoryLimit > 0 {
		err = errors.New("node's heap limit asked for")
		if o.LimitBy != "node" {
			c.cg, err = newMemCgroup(o.MemoryLimit)
		}
		if err != nil && o.LimitBy == "cgroup" {
			return nil, fmt.Errorf("candidate %s: memory limit by cgroup: %w", p.Spec, err)
		}
		if err == nil {
			c.limit = c.cg.String()
		} else if p.Command == "" {
			c.limit = fmt.Sprintf("node --max-old-space-size=%d (no memory cgroup: %v)", heapMB(o.MemoryLimit), err)
		} else {
			c.limit = fmt.Sprintf("none: no memory cgroup (%v), and a cmd: candidate takes no Node flags", err)
		}
	}
	ctx, c.stop = context.WithCancel(ctx)
	if err := c.launch(); err != nil {
		c.cleanup()
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		c.kill(syscall.SIGKILL)
		c.wait()
		c.cleanup()
		return nil, err
	}
	go c.supervise(ctx)
	go c.sample(ctx)
	return c, nil
}

// heapMB is the V8 old-space size for a memory limit: three quarters of
// it, leaving room for the rest of the process.
func heapMB(limit int64) int64 { return max(16, limit*3/4>>20) }

// pickPort picks a port for the candidate (a test takes one first).
var pickPort = freePort

func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// args are the flags JupyterHub's ConfigurableHTTPProxy and the z2jh
// chart give CHP.
func (c *Candidate) args() []string {
	o := c.o
	a := []string{"--ip", o.IP, "--port", strconv.Itoa(o.Port), "--api-ip", o.IP, "--api-port", strconv.Itoa(o.APIPort), "--log-level", o.LogLevel}
	if o.DefaultTarget != "" {
		a = append(a, "--default-target", o.DefaultTarget, "--error-target", o.ErrorTarget)
	}
	if c.prog.HasMetrics {
		a = append(a, "--metrics-ip", o.IP, "--metrics-port", strconv.Itoa(o.MetricsPort))
	}
	return a
}

// commandLine is what runs: node with the candidate's script and flags,
// or a cmd: candidate's command with its placeholders filled in.
func (c *Candidate) commandLine() (string, []string) {
	if c.prog.Command != "" {
		o := c.o
		r := strings.NewReplacer("{port}", strconv.Itoa(o.Port), "{api_port}", strconv.Itoa(o.APIPort), "{ip}", o.IP,
			"{token}", o.Token, "{default_target}", o.DefaultTarget, "{metrics_port}", strconv.Itoa(o.MetricsPort))
		return "sh", []string{"-c", r.Replace(c.prog.Command)}
	}
	args := slices.Clone(c.prog.Args)
	if c.o.MemoryLimit > 0 && c.cg == nil {
		args = append([]string{"--max-old-space-size=" + strconv.FormatInt(heapMB(c.o.MemoryLimit), 10)}, args...)
	}
	return c.prog.Path, append(args, c.args()...)
}

// launch starts one process (or container) of the candidate.
func (c *Candidate) launch() error {
	if c.prog.Spec.Kind == KindImage {
		return c.launchContainer()
	}
	name, args := c.commandLine()
	if c.cg != nil {
		// Join the memory group before the candidate starts: a shell
		// writes its pid, then becomes the candidate.
		quoted := make([]string, 0, len(args)+1)
		for _, a := range append([]string{name}, args...) {
			quoted = append(quoted, shellQuote(a))
		}
		args = []string{"-c", "echo $$ > " + shellQuote(c.cg.procs()) + " && exec " + strings.Join(quoted, " ")}
		name = "sh"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "CONFIGPROXY_AUTH_TOKEN="+c.o.Token)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a stop reaches a cmd: candidate's children too
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start candidate %s: %w", c.prog.Spec, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.logs.add(sc.Text())
			if c.o.Output != nil {
				fmt.Fprintln(c.o.Output, sc.Text())
			}
		}
	}()
	p := &process{pid: cmd.Process.Pid, started: time.Now(), exited: make(chan struct{}),
		kill: func(sig syscall.Signal) { _ = syscall.Kill(-cmd.Process.Pid, sig) }} // the process group
	c.mu.Lock()
	c.proc = p
	c.starts++
	c.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		st := cmd.ProcessState
		p.code = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.signal = ws.Signal().String()
		} else if c.prog.Command != "" && p.code > 128 && p.code < 160 {
			// A shell reports its child's death by signal N as status 128+N.
			p.signal = syscall.Signal(p.code - 128).String()
		}
		close(p.exited)
	}()
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// waitReady polls until the candidate answers, or fails.
func (c *Candidate) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(c.o.ReadyTimeout)
	// The probes' client: no keep-alive, and the candidate's ends of its
	// connections, which it may close a little later, are not counted
	// among its sockets.
	client := &http.Client{Timeout: time.Second, Transport: c.probeClient().Transport}
	for {
		ok := c.ready(ctx, client)
		// CHP catches the failed listen and runs on without its port (its
		// API may still answer).
		taken := c.logs.has("EADDRINUSE") || c.logs.has("address already in use")
		if ok && !taken {
			return nil
		}
		c.mu.Lock()
		exited := c.proc.done()
		c.mu.Unlock()
		if exited || taken || time.Now().After(deadline) || ctx.Err() != nil {
			why := "did not become ready within " + c.o.ReadyTimeout.String()
			switch {
			case taken:
				why = "could not listen on a port it was given"
			case exited:
				why = "exited before it was ready"
			}
			time.Sleep(50 * time.Millisecond) // the last lines
			err := fmt.Errorf("candidate %s %s; its last lines:\n%s", c.prog.Spec, why, strings.Join(c.logs.tail(), "\n"))
			if taken {
				err = fmt.Errorf("%w (%w)", err, errPortTaken)
			}
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probe is the liveness probe: any HTTP answer to /_chp_healthz (a build
// without it answers 404, which still shows a live event loop) within
// ProbeTimeout, on a connection of its own so that none stays open.
func (c *Candidate) probe(parent context.Context) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(parent, ProbeTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL()+"/_chp_healthz", nil)
	start := time.Now()
	resp, err := c.probeClient().Do(req)
	if err != nil {
		// Refused means down (a restart, counted as such); only silence
		// past the timeout, while the sampler goes on, is a hang.
		return 0, parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded)
	}
	drain(resp)
	return time.Since(start), false
}

// drain reads a probe's answer to its end before closing: closed with
// bytes unread, the connection ends with a reset, and the candidate's end
// of it leaves the TCP table while its descriptor is still open, where it
// cannot be told from the candidate's own sockets.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// probeClient makes the probes' connections, one per probe, noting each
// one's local port.
func (c *Candidate) probeClient() *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prober == nil {
		c.prober = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: c.dialProbe}}
	}
	return c.prober
}

// dialProbe connects to the candidate for a probe and notes the local port.
func (c *Candidate) dialProbe(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.probes == nil {
		c.probes = map[int]time.Time{}
	}
	maps.DeleteFunc(c.probes, func(_ int, at time.Time) bool { return now.Sub(at) > time.Minute })
	c.probes[conn.LocalAddr().(*net.TCPAddr).Port] = now
	return conn, nil
}

// probeConn says whether the candidate's socket from local to remote port
// is its end of a probe's connection.
func (c *Candidate) probeConn(local, remote int) bool {
	if local != c.o.Port && local != c.o.APIPort {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.probes[remote]
	return ok
}

// ready is the z2jh probe: /_chp_healthz, else the API, else TCP.
func (c *Candidate) ready(ctx context.Context, client *http.Client) bool {
	base := "http://" + net.JoinHostPort(c.o.IP, strconv.Itoa(c.o.Port))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_chp_healthz", nil)
	if resp, err := client.Do(req); err == nil {
		drain(resp)
		if resp.StatusCode == http.StatusOK {
			return true
		}
	}
	if c.prog.Command != "" {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := c.dialProbe(dctx, "tcp", net.JoinHostPort(c.o.IP, strconv.Itoa(c.o.Port)))
		cancel()
		if err == nil {
			conn.Close()
			return true
		}
		return false
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, c.APIURL()+"/api/routes", nil)
	req.Header.Set("Authorization", "token "+c.o.Token)
	if resp, err := client.Do(req); err == nil {
		drain(resp)
		return resp.StatusCode == http.StatusOK
	}
	return false
}

// supervise waits for each process to end, records why, and restarts it
// after RestartDelay, until stopped.
func (c *Candidate) supervise(ctx context.Context) {
	defer close(c.done)
	for {
		c.wait()
		// Relaunch until it starts. A relaunch that fails is recorded once,
		// not once per try, and never sends us back to wait for the process
		// that already ended (which recorded its exit again each time).
		for failed := false; ; {
			if ctx.Err() != nil {
				return
			}
			t := time.NewTimer(c.o.RestartDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			err := c.launch()
			if err == nil {
				break
			}
			c.o.Log.Warn("restart candidate", "candidate", c.prog.Spec, "err", err)
			if !failed {
				c.recordExit(-1, "", err.Error())
				failed = true
			}
		}
		if err := c.waitReady(ctx); err != nil && ctx.Err() == nil {
			c.o.Log.Warn("restarted candidate not ready", "candidate", c.prog.Spec, "err", err)
		}
	}
}

// wait waits for the current process and records its exit.
func (c *Candidate) wait() {
	p := c.current()
	<-p.exited
	time.Sleep(50 * time.Millisecond) // let the log reader take the last lines
	c.recordExit(p.code, p.signal, "")
}

func (c *Candidate) recordExit(code int, sig, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := Exit{At: time.Now(), Uptime: time.Since(c.proc.started), Code: code, Signal: sig, Stopped: c.stopped, Last: c.logs.tail()}
	if c.cg != nil {
		if n := c.cg.oomKills(); n > c.oomSeen {
			e.OOM, c.oomSeen = true, n
		}
	}
	e.OOM = e.OOM || c.proc.oom
	for _, l := range e.Last {
		if heapLimitRE.MatchString(l) {
			e.HeapLimit = true
		}
	}
	switch {
	case why != "":
		e.Cause = why
	case e.Stopped:
		e.Cause = "stopped by hubreplay"
	case e.OOM:
		e.Cause = "OOM-killed at the memory limit"
	case e.HeapLimit:
		e.Cause = "Node's heap limit (JavaScript heap out of memory)"
	case sig != "":
		e.Cause = "killed by signal: " + sig
	default:
		e.Cause = fmt.Sprintf("exited with status %d", code)
	}
	c.exits = append(c.exits, e)
}

// sample looks at the candidate every SampleEvery.
func (c *Candidate) sample(ctx context.Context) {
	wait.Every(ctx, c.o.SampleEvery, func() {
		s := c.Sample(ctx)
		c.mu.Lock()
		c.samples = append(c.samples, s)
		c.mu.Unlock()
	})
}

// Sample takes one sample now.
func (c *Candidate) Sample(ctx context.Context) Sample {
	c.mu.Lock()
	p, starts := c.proc, c.starts
	c.mu.Unlock()
	s := Sample{At: time.Now(), Starts: starts, Logs: c.logs.snapshot(), FirstLogs: c.logs.newFirsts()}
	if p == nil || p.done() {
		return s
	}
	s.PID = p.pid
	if err := c.readProc(s.PID, &s); err != nil {
		return s
	}
	s.Up = true
	if c.cg != nil {
		s.CgroupMemory = c.cg.usage()
	}
	s.Probe, s.Unanswered = c.probe(ctx)
	if c.prog.HasMetrics {
		_ = metricsSample(ctx, "http://"+net.JoinHostPort(c.o.IP, strconv.Itoa(c.o.MetricsPort))+"/metrics", &s)
	}
	return s
}

// Quiet waits until the candidate's socket count has held still for
// 300 ms (at most within), then samples it: a baseline that a connection
// still closing after start-up would otherwise make look like a leak at
// the end.
func (c *Candidate) Quiet(ctx context.Context, within time.Duration) Sample {
	deadline := time.Now().Add(within)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		p := c.current()
		if p == nil || p.done() {
			break
		}
		var s Sample
		if c.readProc(p.pid, &s) != nil {
			break
		}
		if s.SocketFDs != last {
			last, since = s.SocketFDs, time.Now()
		} else if time.Since(since) >= 300*time.Millisecond {
			break
		}
		if !wait.For(ctx, 50*time.Millisecond) {
			break
		}
	}
	return c.Sample(ctx)
}

// readProc reads a process of the candidate's from /proc, the sampler's
// own connections to it left out.
func (c *Candidate) readProc(pid int, s *Sample) error {
	return procSample(pid, []int{c.o.Port, c.o.APIPort}, c.probeConn, s)
}

// current is the candidate's current process (nil before the first).
func (c *Candidate) current() *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc
}

func (c *Candidate) kill(sig syscall.Signal) {
	p := c.current()
	if p != nil && !p.done() {
		p.kill(sig)
	}
}

// Kill kills the running process with SIGKILL, as the OOM killer or a
// node's failure would; the supervisor records it and restarts.
func (c *Candidate) Kill() { c.kill(syscall.SIGKILL) }

// Stop ends supervision and the candidate: SIGTERM, then SIGKILL after 5 s.
func (c *Candidate) Stop() error {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.stop()
	c.kill(syscall.SIGTERM)
	stopped := make(chan struct{})
	go func() {
		<-c.done
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		c.kill(syscall.SIGKILL)
		<-stopped
	}
	if p := c.current(); !p.done() {
		// Stopped during a restart's readiness wait: the supervisor left
		// this one running.
		c.kill(syscall.SIGKILL)
		c.wait()
	}
	c.cleanup()
	return nil
}

func (c *Candidate) cleanup() {
	if c.cg != nil {
		c.cg.remove()
	}
}

// URL is where the candidate proxies; APIURL its REST API.
func (c *Candidate) URL() string { return "http://" + net.JoinHostPort(c.o.IP, strconv.Itoa(c.o.Port)) }
func (c *Candidate) APIURL() string {
	return "http://" + net.JoinHostPort(c.o.IP, strconv.Itoa(c.o.APIPort))
}

// Token is the API token the candidate was given.
func (c *Candidate) Token() string { return c.o.Token }

// Ports returns the public, API and metrics ports (0: no metrics).
func (c *Candidate) Ports() (int, int, int) { return c.o.Port, c.o.APIPort, c.o.MetricsPort }

// Limit says how the memory limit is enforced.
func (c *Candidate) Limit() string { return c.limit }

// Samples returns the samples so far.
func (c *Candidate) Samples() []Sample {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.samples)
}

// Exits returns every exit so far.
func (c *Candidate) Exits() []Exit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.exits)
}

// Starts is how many times the candidate was started.
func (c *Candidate) Starts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.starts
}
