package replay_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/replay"
)

// The side-by-side benchmark: hubreplay, wrk and GoReplay send the same
// requests to the same endpoint, one after the other in one run, and the
// endpoint counts what arrives. The endpoint runs in its own process (this
// test binary, re-executed), so each tool has the same machine against
// the same server.

// endpointBody is what the endpoint answers: the size of a hub API reply.
var endpointBody = []byte(`{"kind":"user","name":"x","admin":false,"groups":[],"server":"/user/x/","pending":null,"created":"2026-11-03T14:00:00Z","last_activity":"2026-11-03T14:00:00Z","servers":{},"roles":["user"],"auth_state":null,"padding":"` + strings.Repeat("x", 600-238) + `"}`)

// serveEndpoint answers every request with 200 and endpointBody, prints
// its URL, then prints the number of requests answered so far for every
// line read from stdin, until stdin ends.
func serveEndpoint() {
	var n atomic.Int64
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(endpointBody)))
			_, _ = w.Write(endpointBody)
			n.Add(1)
		}))
	}()
	fmt.Println("http://" + l.Addr().String())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(n.Load())
	}
}

// endpoint is the counting server's process.
type endpoint struct {
	URL string
	in  io.WriteCloser
	out *bufio.Reader
	cmd *exec.Cmd
	mu  sync.Mutex
}

func startEndpoint(b *testing.B) *endpoint {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HUBREPLAY_BENCH_ENDPOINT=1")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	e := &endpoint{in: in, out: bufio.NewReader(out), cmd: cmd}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	line, err := e.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://") {
		b.Fatalf("endpoint process: %q %v", line, err)
	}
	e.URL = strings.TrimSpace(line)
	return e
}

func (e *endpoint) count(b *testing.B) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := io.WriteString(e.in, "\n"); err != nil {
		b.Fatal(err)
	}
	line, err := e.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	return n
}

// rate runs one tool and measures the requests/s the endpoint answered
// between the first answer and the last, so that no tool is charged for
// its start-up: the counter is read every 10 ms while it runs.
func (e *endpoint) rate(b *testing.B, run func(ctx context.Context, arrived func() int64) error) (requests int64, perSecond float64) {
	b.Helper()
	base := e.count(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func() int64 { return e.count(b) - base }) }()
	var first, last time.Time
	var atFirst, atLast int64
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			n := e.count(b) - base
			if n > atLast {
				atLast, last = n, time.Now()
			}
			if atLast <= atFirst || !last.After(first) {
				b.Fatalf("the endpoint answered %d requests: too few to measure", n)
			}
			return n, float64(atLast-atFirst) / last.Sub(first).Seconds()
		case <-tick.C:
			n := e.count(b) - base
			now := time.Now()
			if n > 0 && first.IsZero() {
				first, atFirst = now, n
			}
			if n > atLast {
				last, atLast = now, n
			}
		}
	}
}

// BenchmarkVersusWrkAndGoReplay: requests/s that hubreplay's replayer,
// wrk and GoReplay get answered by the same endpoint over 200 keep-alive
// connections. hubreplay plays a trace of 200 connections × 250 requests
// at max speed; GoReplay replays the same 50,000 requests from its own
// file format at max speed with 200 workers; wrk sends the same request
// on 200 connections for 5 s (a load generator: no trace, no timing, no
// checking). Ratios are hubreplay's rate over each tool's.
func BenchmarkVersusWrkAndGoReplay(b *testing.B) {
	const conns, perConn = 200, 250
	e := startEndpoint(b)
	path := benchTrace(b, conns, perConn, 0, 0, time.Millisecond, 0, time.Second)
	p := plan(b, path, replay.Options{Speed: 0})
	wrk, wrkErr := exec.LookPath("wrk")
	for b.Loop() {
		n, ours := e.rate(b, func(ctx context.Context, _ func() int64) error {
			sum, err := (&replay.Runner{Target: e.URL}).Run(ctx, p)
			if err == nil && (sum.Failed > 0 || sum.Requests != conns*perConn) {
				err = fmt.Errorf("hubreplay: %d of %d requests, %d failed: %v", sum.Requests, conns*perConn, sum.Failed, sum.Errors)
			}
			return err
		})
		b.ReportMetric(ours, "hubreplay-req/s")
		if n != conns*perConn {
			b.Fatalf("the endpoint answered %d of hubreplay's %d requests", n, conns*perConn)
		}

		if wrkErr != nil {
			b.Logf("wrk is not installed (make bench installs it): no ratio to wrk")
		} else {
			_, theirs := e.rate(b, func(ctx context.Context, _ func() int64) error {
				out, err := exec.CommandContext(ctx, wrk, "-t2", "-c", strconv.Itoa(conns), "-d5s", e.URL+"/hub/api/users/x/activity").CombinedOutput()
				if err != nil {
					return fmt.Errorf("wrk: %v\n%s", err, out)
				}
				return nil
			})
			b.ReportMetric(theirs, "wrk-req/s")
			b.ReportMetric(ours/theirs, "hubreplay/wrk")
		}

		gor := testenv.GoReplay(b)
		file := goReplayFile(b, conns, perConn)
		got, theirs := e.rate(b, func(ctx context.Context, arrived func() int64) error {
			// --input-file-read-depth: GoReplay reads this many requests
			// ahead and then sleeps 100 ms, which caps it at 1,000/s by
			// default; reading the whole file ahead lifts the cap.
			cmd := exec.CommandContext(ctx, gor, "--input-file", file+"|100000000%", "--input-file-read-depth", strconv.Itoa(conns*perConn),
				"--output-http", e.URL,
				"--output-http-workers", strconv.Itoa(conns), "--output-http-workers-min", strconv.Itoa(conns), "--exit-after", "60s")
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				return err
			}
			// GoReplay does not exit at the end of its file: stop it once
			// every request has arrived (or after a minute).
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			deadline := time.After(time.Minute)
			for {
				select {
				case err := <-waited:
					return fmt.Errorf("goreplay ended early: %v\n%s", err, out.String())
				case <-deadline:
					_ = cmd.Process.Kill()
					<-waited
					return nil
				case <-time.After(20 * time.Millisecond):
				}
				if arrived() >= conns*perConn {
					_ = cmd.Process.Kill()
					<-waited
					return nil
				}
			}
		})
		if got < conns*perConn {
			b.Logf("GoReplay delivered %d of %d requests in a minute", got, conns*perConn)
		}
		b.ReportMetric(theirs, "goreplay-req/s")
		b.ReportMetric(ours/theirs, "hubreplay/goreplay")
	}
	b.ReportMetric(0, "ns/op")
}

// goReplayFile writes the requests of benchTrace(conns, perConn, …) in
// GoReplay's file format: "1 ID TIMESTAMP LATENCY", the raw request, and
// its separator line. Timestamps are the trace's (request k of every
// connection at k ms).
func goReplayFile(b *testing.B, conns, perConn int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "requests.gor")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	start := time.Date(2026, 11, 3, 14, 0, 0, 0, time.UTC).UnixNano()
	id := 0
	for k := range perConn {
		for range conns {
			id++
			fmt.Fprintf(w, "1 %024x %d 0\nGET /hub/api/users/x/activity HTTP/1.1\r\nHost: hub.example\r\n\r\n\n\U0001F435\U0001F648\U0001F649\n", id, start+int64(k)*int64(time.Millisecond))
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}
