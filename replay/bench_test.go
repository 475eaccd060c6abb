package replay_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/fixtures/lecturepeak"
	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

// TestMain lets the memory benchmark run the fixtures in a child process
// (this test binary, re-executed): 10,000 WebSocket sessions need 10,000
// sockets on each side, and one process may not hold 20,000 files here.
func TestMain(m *testing.M) {
	if path := os.Getenv("HUBREPLAY_BENCH_FIXTURES"); path != "" {
		serveFixtures(path)
		return
	}
	if os.Getenv("HUBREPLAY_BENCH_ENDPOINT") != "" {
		serveEndpoint()
		return
	}
	os.Exit(m.Run())
}

func serveFixtures(path string) {
	r, err := trace.Open(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	ix, err := fixtures.BuildIndex(context.Background(), r, nil)
	r.Close()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	srv, err := fixtures.Listen(&fixtures.Responder{Index: ix, Speed: 1}, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println(srv.Hub())
	// Until the parent goes; each line it sends asks for the bytes
	// allocated so far.
	for in := bufio.NewScanner(os.Stdin); in.Scan(); {
		fmt.Println(allocated())
	}
	_ = srv.Close()
}

// benchTrace builds a trace of hub-path traffic (no routes needed):
// httpConns keep-alive connections with perConn small requests each, one
// every gap; wsSessions sessions of rounds request/reply frames each, one
// every gap; all open by spread and closed at length.
func benchTrace(b testing.TB, httpConns, perConn, wsSessions, rounds int, gap, spread, length time.Duration) string {
	b.Helper()
	h := trace.Header{Format: trace.FormatName, Version: trace.Version, Start: time.Date(2026, 11, 3, 14, 0, 0, 0, time.UTC), Source: "bench"}
	var recs []trace.Record
	id := trace.ConnID(0)
	at := func(i, n int) time.Duration {
		if n <= 1 {
			return 0
		}
		return time.Duration(int64(spread) * int64(i) / int64(n))
	}
	for i := range httpConns {
		id++
		open := at(i, httpConns)
		recs = append(recs, &trace.ConnOpen{TS: open, Conn: id})
		for k := range perConn {
			ts := open + time.Duration(k)*gap
			recs = append(recs, &trace.HTTP{TS: ts, Conn: id,
				Req:  trace.Request{End: ts, Method: "GET", Target: "/hub/api/users/x/activity", Proto: "HTTP/1.1", Headers: []trace.Field{{"Host", "hub.example"}}},
				Resp: &trace.Response{Start: ts, End: ts, Status: 200, Proto: "HTTP/1.1", BodySize: 600, Headers: []trace.Field{{"Content-Type", "application/json"}}}})
		}
		recs = append(recs, &trace.ConnClose{TS: length, Conn: id, How: trace.CloseCaptureEnd})
	}
	for i := range wsSessions {
		id++
		open := at(i, wsSessions)
		recs = append(recs, &trace.ConnOpen{TS: open, Conn: id},
			&trace.HTTP{TS: open, Conn: id, Upgrade: true,
				Req: trace.Request{End: open, Method: "GET", Target: "/hub/api/events/" + strconv.Itoa(i), Proto: "HTTP/1.1",
					Headers: []trace.Field{{"Host", "hub.example"}, {"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"}}},
				Resp: &trace.Response{Start: open, End: open, Status: 101, Headers: []trace.Field{{"Upgrade", "websocket"}, {"Connection", "Upgrade"}}}})
		for k := range rounds {
			ts := open + time.Duration(k+1)*gap
			recs = append(recs,
				&trace.WSFrame{TS: ts, Conn: id, Dir: trace.ClientToServer, Op: trace.OpBinary, Fin: true, Masked: true, Len: 400},
				&trace.WSFrame{TS: ts + time.Microsecond, Conn: id, Dir: trace.ServerToClient, Op: trace.OpBinary, Fin: true, Len: 600})
		}
		recs = append(recs, &trace.ConnClose{TS: length, Conn: id, How: trace.CloseCaptureEnd})
	}
	return writeTrace(b, h, recs)
}

// BenchmarkReplayHTTP: the most requests/s the replayer drives, at max
// speed over 200 keep-alive connections, against the emulators in this
// process (both share the machine's cores).
func BenchmarkReplayHTTP(b *testing.B) {
	path := benchTrace(b, 200, 100, 0, 0, time.Millisecond, 0, time.Second)
	_, _, srv := fixturesFor(b, path, 1e9)
	p := plan(b, path, replay.Options{Speed: 0})
	b.ResetTimer()
	var requests int
	for range b.N {
		sum, err := (&replay.Runner{Target: srv.Hub()}).Run(context.Background(), p)
		if err != nil || sum.Failed > 0 {
			b.Fatal(err, sum.Errors)
		}
		requests += sum.Requests
	}
	b.ReportMetric(float64(requests)/b.Elapsed().Seconds(), "requests/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkReplayWebSocket: the most WebSocket messages/s (client frames
// sent plus server frames read and matched) over 200 sessions at max speed.
func BenchmarkReplayWebSocket(b *testing.B) {
	path := benchTrace(b, 0, 0, 200, 200, time.Millisecond, 0, time.Second)
	_, _, srv := fixturesFor(b, path, 1e9)
	p := plan(b, path, replay.Options{Speed: 0})
	b.ResetTimer()
	var msgs int
	for range b.N {
		sum, err := (&replay.Runner{Target: srv.Hub()}).Run(context.Background(), p)
		if err != nil || sum.FramesMatched != sum.FramesExpected {
			b.Fatal(err, sum.SessionErrors)
		}
		msgs += sum.FramesSent + sum.FramesReceived
	}
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "messages/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSendError: how late the replayer sends requests (its own timing
// error, p50 and p99) at speeds 1, 10 and 100, each over 10 s of wall time
// with the same 400 requests/s: 100 connections, one request every 250 ms
// of wall time each.
func BenchmarkSendError(b *testing.B) {
	for _, speed := range []float64{1, 10, 100} {
		b.Run(fmt.Sprintf("speed=%g", speed), func(b *testing.B) {
			gap := time.Duration(float64(250*time.Millisecond) * speed)
			length := time.Duration(float64(10*time.Second) * speed)
			path := benchTrace(b, 100, 39, 0, 0, gap, gap, length)
			_, _, srv := fixturesFor(b, path, speed)
			p := plan(b, path, replay.Options{Speed: speed})
			var p50, p99 int64
			b.ResetTimer()
			for range b.N {
				sum, err := (&replay.Runner{Target: srv.Hub()}).Run(context.Background(), p)
				if err != nil || sum.Failed > 0 {
					b.Fatal(err, sum.Errors)
				}
				se := sum.Percentiles[replay.HistSendError]
				p50, p99 = max(p50, se.P50), max(p99, se.P99)
			}
			b.ReportMetric(float64(p50), "p50-µs")
			b.ReportMetric(float64(p99), "p99-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkScale: 10,000 WebSocket sessions and then 5,000 keep-alive HTTP
// connections held open at once by one replaying process, the fixtures in
// another. Prints the memory (RSS) each open WebSocket session and each
// open keep-alive connection costs the replayer.
func BenchmarkScale(b *testing.B) {
	const sessions, conns = 10000, 5000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < sessions+conns+512 {
		b.Skipf("needs %d open files per process (ulimit -n); this one may have %d", sessions+conns+512, lim.Cur)
	}
	// Sessions open over the first 4 s, connections over 6–8 s; all stay
	// open to 12 s. Memory is read at 5 s and at 10 s.
	path := benchScaleTrace(b, sessions, conns, 12*time.Second)
	target := fixturesProcess(b, path)
	p := plan(b, path, replay.Options{Speed: 1})
	for range b.N {
		run := &replay.Runner{Target: target, Timeout: 30 * time.Second}
		base := rss()
		var wsRSS, httpRSS int64
		var wsOpen, httpOpen int64
		go func() {
			for run.Progress().Elapsed < 5*time.Second {
				time.Sleep(50 * time.Millisecond)
			}
			runtime.GC()
			wsRSS, wsOpen = rss(), run.Progress().OpenWS
			for run.Progress().Elapsed < 10*time.Second {
				time.Sleep(50 * time.Millisecond)
			}
			runtime.GC()
			pr := run.Progress()
			httpRSS, httpOpen = rss(), pr.Open-pr.OpenWS
		}()
		sum, err := run.Run(context.Background(), p)
		if err != nil {
			b.Fatal(err)
		}
		if sum.Connected != sessions || sum.Failed > 0 {
			b.Fatalf("%d of %d sessions connected; %v %v", sum.Connected, sessions, sum.Errors, sum.SessionErrors)
		}
		b.ReportMetric(float64(wsOpen), "websockets-open")
		b.ReportMetric(float64(httpOpen), "keepalive-open")
		b.ReportMetric(float64(wsRSS-base)/float64(wsOpen), "B/websocket")
		b.ReportMetric(float64(httpRSS-wsRSS)/float64(max(1, httpOpen)), "B/keepalive")
		b.ReportMetric(float64(httpRSS)/(1<<20), "MiB-rss")
	}
	b.ReportMetric(0, "ns/op")
}

// fixturesProcess serves the fixtures for the trace at path in a process
// of their own (this test binary, re-executed) for the rest of the test,
// and returns the hub's URL.
func fixturesProcess(tb testing.TB, path string) string {
	tb.Helper()
	return fixturesChild(tb, path).url
}

// fixturesProc is the fixtures' process: the hub's URL, its pid, and the
// pipes that ask it how much it has allocated.
type fixturesProc struct {
	url string
	pid int
	in  io.Writer
	out *bufio.Reader
}

// allocated is how many bytes of heap the fixtures' process has
// allocated so far (runtime.MemStats.TotalAlloc).
func (f *fixturesProc) allocated(tb testing.TB) uint64 {
	tb.Helper()
	if _, err := io.WriteString(f.in, "alloc\n"); err != nil {
		tb.Fatal(err)
	}
	line, err := f.out.ReadString('\n')
	n, perr := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
	if err != nil || perr != nil {
		tb.Fatalf("fixtures process: %q %v", line, err)
	}
	return n
}

// fixturesChild is fixturesProcess, with the child's pid and a way to
// ask it what it allocated.
func fixturesChild(tb testing.TB, path string) *fixturesProc {
	tb.Helper()
	child := exec.Command(os.Args[0], "-test.run=^$")
	// The child runs on as many processors as this process (go test -cpu).
	child.Env = append(os.Environ(), "HUBREPLAY_BENCH_FIXTURES="+path, "GOMAXPROCS="+strconv.Itoa(runtime.GOMAXPROCS(0)))
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); _ = child.Wait() })
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://") {
		tb.Fatalf("fixtures process: %q %v", line, err)
	}
	return &fixturesProc{url: strings.TrimSpace(line), pid: child.Process.Pid, in: stdin, out: out}
}

// benchScaleTrace opens sessions WebSockets over the first 4 s and conns
// keep-alive connections from 6 s to 8 s, all held open until end.
func benchScaleTrace(b testing.TB, sessions, conns int, end time.Duration) string {
	h := trace.Header{Format: trace.FormatName, Version: trace.Version, Start: time.Date(2026, 11, 3, 14, 0, 0, 0, time.UTC), Source: "bench"}
	var recs []trace.Record
	id := trace.ConnID(0)
	for i := range sessions {
		id++
		open := 4 * time.Second * time.Duration(i) / time.Duration(sessions)
		recs = append(recs, &trace.ConnOpen{TS: open, Conn: id},
			&trace.HTTP{TS: open, Conn: id, Upgrade: true,
				Req: trace.Request{End: open, Method: "GET", Target: "/hub/api/events/" + strconv.Itoa(i), Proto: "HTTP/1.1",
					Headers: []trace.Field{{"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"}}},
				Resp: &trace.Response{Start: open, End: open, Status: 101, Headers: []trace.Field{{"Upgrade", "websocket"}}}},
			&trace.WSFrame{TS: open + 10*time.Millisecond, Conn: id, Dir: trace.ClientToServer, Op: trace.OpText, Fin: true, Masked: true, Len: 300},
			&trace.WSFrame{TS: open + 11*time.Millisecond, Conn: id, Dir: trace.ServerToClient, Op: trace.OpText, Fin: true, Len: 900},
			&trace.ConnClose{TS: end, Conn: id, How: trace.CloseCaptureEnd})
	}
	for i := range conns {
		id++
		open := 6*time.Second + 2*time.Second*time.Duration(i)/time.Duration(conns)
		recs = append(recs, &trace.ConnOpen{TS: open, Conn: id},
			&trace.HTTP{TS: open, Conn: id,
				Req:  trace.Request{End: open, Method: "GET", Target: "/hub/api/users/x", Proto: "HTTP/1.1"},
				Resp: &trace.Response{Start: open, End: open, Status: 200, BodySize: 700}},
			&trace.ConnClose{TS: end, Conn: id, How: trace.CloseCaptureEnd})
	}
	return writeTrace(b, h, recs)
}

// rss is this process's resident memory, from /proc.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkBuildPlan: reading a lecture peak (300 students, 30 minutes)
// into a plan; prints records/s and the plan's memory per trace record
// (a plan is held in memory while it plays).
func BenchmarkBuildPlan(b *testing.B) {
	h, recs := lecturepeak.Generate(lecturepeak.Options{Users: 300, Duration: 30 * time.Minute, Seed: 1})
	path := writeTrace(b, h, recs)
	var before, after runtime.MemStats
	b.ResetTimer()
	var p *replay.Plan
	for range b.N {
		p = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		p = plan(b, path, replay.Options{Speed: 1})
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(len(recs)*b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(recs)), "B/record")
	b.ReportMetric(0, "ns/op")
	runtime.KeepAlive(p)
}
