package replay_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hubreplay/hubreplay/internal/cpustat"
	"github.com/hubreplay/hubreplay/internal/procs"
	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

// BenchmarkHarnessVersusCHP: what the harness costs next to the proxy it
// tests, on the same traffic. A real CHP 4.6.2 stands between the replayer
// (this process) and the fixtures (a process of their own); each one's CPU
// time (user and system) over the run is divided by the requests, or by
// the WebSocket frames, it carried. The harness's goal is at most half the
// proxy's: then the proxy, not the harness, saturates first. The replayer's
// and the fixtures' heap allocations per request or frame are printed too
// (what their garbage collection works through).
//
// The traffic is paced as a replayed peak is, not as fast as possible
// (which would batch work and flatter everyone): 200 keep-alive
// connections, a request on each every 150 ms (1,333 requests a second),
// or 200 WebSocket sessions, a client frame and the server's answer on
// each every 150 ms (2,667 frames a second), for 10 s.
//
// The harness runs on the processors compare and capacity give it
// (internal/procs: all but one, at least one, of what go test -cpu
// allows; GOMAXPROCS in the environment wins); the rest are the proxy's.
func BenchmarkHarnessVersusCHP(b *testing.B) {
	testenv.Need(b, "node")
	const conns, every, length = 200, 150 * time.Millisecond, 10 * time.Second
	n := int(length / every)
	for _, kind := range []struct {
		name, unit string
		path       string
	}{
		{"http", "request", benchTrace(b, conns, n, 0, 0, every, every, length+time.Second)},
		{"websocket", "frame", benchTrace(b, 0, 0, conns, n, every, every, length+time.Second)},
	} {
		b.Run(kind.name, func(b *testing.B) {
			// Here, not in the parent: go test sets GOMAXPROCS (-cpu) for
			// each sub-benchmark it runs.
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
			procs.Harness(0)
			fixt := fixturesChild(b, kind.path)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			chp := startCHP(ctx, b, fixt.url)
			defer chp.Stop()
			p := plan(b, kind.path, replay.Options{Speed: 1})
			var units, replayer, fix, proxyCPU time.Duration
			var replayerAlloc, fixAlloc uint64
			for b.Loop() {
				self0, fix0, chp0 := procCPU(b, os.Getpid()), procCPU(b, fixt.pid), chp.Sample(ctx).CPU
				alloc0, fixAlloc0 := allocated(), fixt.allocated(b)
				sum, err := (&replay.Runner{Target: chp.URL(), Timeout: 10 * time.Second}).Run(ctx, p)
				if err != nil || sum.Failed > 0 || sum.FramesMatched != sum.FramesExpected {
					b.Fatal(err, sum.Errors, sum.SessionErrors)
				}
				replayerAlloc += allocated() - alloc0
				fixAlloc += fixt.allocated(b) - fixAlloc0
				replayer += procCPU(b, os.Getpid()) - self0
				fix += procCPU(b, fixt.pid) - fix0
				proxyCPU += chp.Sample(ctx).CPU - chp0
				if kind.name == "http" {
					units += time.Duration(sum.Requests)
				} else {
					units += time.Duration(sum.FramesSent + sum.FramesReceived)
				}
			}
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(units) }
			b.ReportMetric(per(replayer), "replayer-µs/"+kind.unit)
			b.ReportMetric(per(fix), "fixtures-µs/"+kind.unit)
			b.ReportMetric(per(proxyCPU), "chp-µs/"+kind.unit)
			b.ReportMetric(float64(replayer+fix)/float64(proxyCPU), "harness/chp")
			b.ReportMetric(float64(replayerAlloc)/float64(units), "replayer-allocB/"+kind.unit)
			b.ReportMetric(float64(fixAlloc)/float64(units), "fixtures-allocB/"+kind.unit)
			b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "harness-procs")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// startCHP starts CHP 4.6.2 in front of target; the caller stops it. It
// is sampled only when asked: the sampler's own cost is per second, not
// per request (compare's figures include it).
func startCHP(ctx context.Context, b *testing.B, target string) *proxy.Candidate {
	spec, err := proxy.ParseSpec("chp@4.6.2")
	if err != nil {
		b.Fatal(err)
	}
	prog, err := proxy.Obtain(ctx, spec, &proxy.Cache{Dir: testenv.CacheDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	chp, err := proxy.Start(ctx, prog, proxy.Options{DefaultTarget: target, LogLevel: "warn", SampleEvery: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	return chp
}

// allocated is how many bytes of heap this process has allocated so far.
func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// procCPU is a process's CPU time so far, user and system, as the
// kernel counts it for every process here (this one too).
func procCPU(b *testing.B, pid int) time.Duration {
	p, err := cpustat.ReadProc(strconv.Itoa(pid))
	if err != nil {
		b.Fatal(err)
	}
	return p.CPU
}
