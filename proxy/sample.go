package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hubreplay/hubreplay/internal/cpustat"
)

// Sample is one look at the candidate.
type Sample struct {
	At     time.Time `json:"at"`
	Up     bool      `json:"up"`            // a process was running
	PID    int       `json:"pid,omitempty"` // which one
	Starts int       `json:"starts"`        // how many times the candidate was started so far
	// From /proc: resident memory, CPU time of the current process,
	// open file descriptors, and its TCP sockets by state (TIME_WAIT ones
	// belong to no process; they are counted by the proxy's ports).
	RSS int64         `json:"rss_bytes"`
	CPU time.Duration `json:"cpu_ns"`
	// Wait is how long the process's main thread (Node's event loop) has
	// waited for a processor since it started: time the machine, not the
	// candidate, added to its answers (-1: not known).
	Wait time.Duration `json:"run_wait_ns,omitempty"`
	FDs  int           `json:"fds"`
	// SocketFDs are the descriptors that are sockets, whatever their
	// state — also those the kernel has already taken out of its TCP
	// table (reset by the peer) but the process never closed.
	SocketFDs int            `json:"socket_fds"`
	Sockets   map[string]int `json:"sockets,omitempty"`
	// CgroupMemory is the memory cgroup's usage, when the limit is one.
	CgroupMemory int64 `json:"cgroup_memory_bytes,omitempty"`
	// From --metrics-port, when the build has it: Node's heap and event loop.
	HeapUsed     int64   `json:"heap_used_bytes,omitempty"`
	HeapTotal    int64   `json:"heap_total_bytes,omitempty"`
	EventLoopLag float64 `json:"event_loop_lag_seconds,omitempty"`
	// Logs counts log lines by kind since the first start: epipe,
	// econnreset, socket_hang_up, uncaught, heap_limit, …
	Logs map[string]int64 `json:"logs,omitempty"`
	// FirstLogs are the first line of each kind and the stack trace after
	// it (at most 20 lines), in the first sample after it was logged.
	FirstLogs map[string][]string `json:"first_logs,omitempty"`
	// Probe is how long the liveness probe (GET /_chp_healthz, as z2jh's)
	// took to get any HTTP answer; Unanswered says it got none within
	// ProbeTimeout: the process lives but does not answer, as a Node
	// process whose event loop is stuck.
	Probe      time.Duration `json:"probe_ns,omitempty"`
	Unanswered bool          `json:"probe_unanswered,omitempty"`
}

// ProbeTimeout is how long a sample's liveness probe waits for an answer:
// z2jh's liveness probe's timeoutSeconds, so that an unanswered probe is a
// failure as the kubelet counts it (a hung candidate then stretches the
// second between samples to three).
const ProbeTimeout = 3 * time.Second

// tcpStates are the state codes of /proc/net/tcp.
var tcpStates = map[string]string{
	"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
	"06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}

// procSample reads a process's figures from /proc.
func procSample(pid int, ports []int, own func(local, remote int) bool, s *Sample) error {
	dir := fmt.Sprintf("/proc/%d", pid)
	proc, err := cpustat.ReadProc(strconv.Itoa(pid))
	if err != nil {
		return err
	}
	s.CPU, s.RSS, s.Wait = proc.CPU, proc.RSS, proc.Wait
	inodes := map[string]bool{}
	fds, err := os.ReadDir(dir + "/fd")
	if err == nil {
		s.FDs = len(fds)
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil {
				if in, ok := strings.CutPrefix(l, "socket:["); ok {
					inodes[strings.TrimSuffix(in, "]")] = true
				}
			}
		}
	}
	s.Sockets = map[string]int{}
	for _, f := range []string{"tcp", "tcp6"} {
		countSockets(filepath.Join(dir, "net", f), inodes, ports, own, s.Sockets)
	}
	s.SocketFDs = len(inodes)
	return nil
}

// countSockets adds the sockets of a /proc/net/tcp file that the process
// owns (by inode), and the TIME_WAIT ones on its ports. The process's
// ends of the sampler's own connections (own says which, by the process's
// local port and the peer's port) are not its sockets: they are dropped
// from inodes too.
func countSockets(path string, inodes map[string]bool, ports []int, own func(local, remote int) bool, out map[string]int) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	port := func(addr string) int {
		_, p, _ := strings.Cut(addr, ":")
		n, _ := strconv.ParseInt(p, 16, 32)
		return int(n)
	}
	sc := bufio.NewScanner(f)
	sc.Scan() // the column names
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		state := tcpStates[fields[3]]
		if inodes[fields[9]] && fields[9] != "0" {
			if own != nil && own(port(fields[1]), port(fields[2])) {
				delete(inodes, fields[9])
				continue
			}
			out[state]++
			continue
		}
		if state == "TIME_WAIT" && slices.Contains(ports, port(fields[1])) {
			out[state]++
		}
	}
}

// metricsSample reads Node's figures from the candidate's metrics port.
// metricsClient opens a connection per scrape: a kept-alive one would be
// a socket of the candidate's that only the sampler holds open, counted
// among the sockets the replay leaves behind.
var metricsClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func metricsSample(ctx context.Context, url string, s *Sample) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return fmt.Errorf("parse %s: %w", url, err)
	}
	s.HeapUsed = int64(sumGauge(fams["nodejs_heap_size_used_bytes"]))
	s.HeapTotal = int64(sumGauge(fams["nodejs_heap_size_total_bytes"]))
	s.EventLoopLag = sumGauge(fams["nodejs_eventloop_lag_seconds"])
	return nil
}

func sumGauge(f *dto.MetricFamily) float64 {
	if f == nil {
		return 0
	}
	var v float64
	for _, m := range f.GetMetric() {
		switch {
		case m.GetGauge() != nil:
			v += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v
}
