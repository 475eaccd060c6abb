package capture

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/hubreplay/hubreplay/capture/anonymize"
	"github.com/hubreplay/hubreplay/internal/cpustat"
	"github.com/hubreplay/hubreplay/internal/memlimit"
	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/trace"
)

// benchPcapBytes is how big the generated benchmark capture is.
const benchPcapBytes = 1 << 30

// benchPcap returns a capture of at least 1 GiB of JupyterHub-like traffic:
// 300 users on keep-alive HTTP connections (JupyterLab's API calls, static
// assets up to 2 MB, chunked and sized) and kernel WebSockets (execute
// requests, status, streams and replies, masked from the browser), 1448-
// byte segments, connections that close and reopen. It is made once and
// kept in the test cache.
func benchPcap(b *testing.B) string { return benchPcapOf(b, benchPcapBytes, "bench-v1.pcap") }

// benchPcapOf is benchPcap of at least size bytes, kept under name.
func benchPcapOf(b *testing.B, size int64, name string) string {
	b.Helper()
	path := filepath.Join(testenv.CacheDir(b), name)
	if st, err := os.Stat(path); err == nil && st.Size() >= size {
		return path
	}
	b.Logf("generating %s (%d MB, once)", path, size>>20)
	f, err := os.Create(path + ".tmp")
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 4<<20)
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		b.Fatal(err)
	}
	var written int64
	write := func(ps []pkt) {
		for _, p := range ps {
			if err := pw.WritePacket(p.ci, p.data); err != nil {
				b.Fatal(err)
			}
			written += int64(len(p.data)) + 16
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	now := epoch
	filler := []byte(strings.Repeat("x", 2<<20))
	type user struct {
		http, ws *tcpConn
		port     uint16
	}
	users := make([]*user, 300)
	nextPort := uint16(20000)
	open := func(u int, kind string) *tcpConn {
		nextPort++
		k := newTCPConn(b, &now, byte(u%250+2), nextPort)
		write(k.handshake())
		if kind == "ws" {
			write(k.send(true, fmt.Sprintf("GET /user/u%d/api/kernels/%08d-0000-4000-8000-000000000000/channels?session_id=s%d HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nCookie: jupyterhub-user-u%d=2|1:0|10:1764000000|abc\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", u, u, u, u), 1448))
			write(k.send(false, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", 1448))
		}
		return k
	}
	for i := range users {
		users[i] = &user{http: open(i, "http"), ws: open(i, "ws")}
	}
	frameBytes := func(masked bool, payload []byte) string {
		f := ws.NewTextFrame(payload)
		if masked {
			f = ws.MaskFrameWith(f, [4]byte{1, 2, 3, 4})
		}
		var sb strings.Builder
		_ = ws.WriteFrame(&sb, f)
		return sb.String()
	}
	msg := func(typ, channel string, size int) []byte {
		head := fmt.Sprintf(`{"header":{"msg_id":"%d","msg_type":%q,"session":"s","username":"u","version":"5.3"},"parent_header":{},"metadata":{},"channel":%q,"content":{"text":"`, rng.Int64(), typ, channel)
		return []byte(head + string(filler[:max(0, size-len(head)-3)]) + `"}}`)
	}
	for written < size {
		i := rng.IntN(len(users))
		u := users[i]
		switch r := rng.IntN(100); {
		case r < 45: // an API call or an asset
			size := []int{120, 800, 2500, 14000, 60000, 400000, 2000000}[min(6, int(rng.ExpFloat64()*1.2))]
			write(u.http.send(true, fmt.Sprintf("GET /user/u%d/api/contents/nb%d.ipynb?content=1&_=%d HTTP/1.1\r\nHost: hub\r\nCookie: jupyterhub-user-u%d=2|1:0|10:1764000000|abc; _xsrf=2|6b1c|9d8e|1764\r\nAccept: application/json\r\n\r\n", i, rng.IntN(50), rng.Int64(), i), 1448))
			if rng.IntN(3) == 0 {
				write(u.http.send(false, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+strconv.FormatInt(int64(size), 16)+"\r\n"+string(filler[:size])+"\r\n0\r\n\r\n", 1448))
			} else {
				write(u.http.send(false, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n"+string(filler[:size]), 1448))
			}
		case r < 97: // a cell run
			write(u.ws.send(true, frameBytes(true, msg("execute_request", "shell", 300+rng.IntN(2700))), 1448))
			out := frameBytes(false, msg("status", "iopub", 150)) + frameBytes(false, msg("execute_input", "iopub", 400)) +
				frameBytes(false, msg("stream", "iopub", 100+int(rng.ExpFloat64()*8000))) + frameBytes(false, msg("execute_reply", "shell", 300)) +
				frameBytes(false, msg("status", "iopub", 150))
			write(u.ws.send(false, out, 1448))
		default: // the browser reloads: connections end and start again
			write([]pkt{u.http.fin(true), u.http.fin(false)})
			write([]pkt{u.ws.rst(true)})
			u.http, u.ws = open(i, "http"), open(i, "ws")
		}
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		b.Fatal(err)
	}
	return path
}

// peakRSS resets (reset true) or reads the process's peak resident set.
func peakRSS(reset bool) int64 {
	if reset {
		_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		return 0
	}
	peak, _ := memlimit.PeakRSS(os.Getpid())
	return peak
}

// benchCapture captures the pcap at path as `hubreplay capture --pcap`
// does (anonymized, compressed, the trace written to nowhere), on procs
// cores, and returns its counters and the process's peak RSS meanwhile.
func benchCapture(b *testing.B, path string, procs int) (Counters, int64) {
	b.Helper()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	runtime.GC()
	peakRSS(true)
	src, err := OpenFile(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	anon, _ := anonymize.New(anonymize.RandomKey(), anonymize.DefaultRules())
	var tw *trace.Writer
	c, err := Run(context.Background(), src, func(s time.Time) (RecordWriter, error) {
		tw, err = trace.NewWriter(io.Discard, trace.Header{Format: trace.FormatName, Version: trace.Version, Start: s}, nil)
		return tw, err
	}, Options{Scrub: anon})
	if err != nil {
		b.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	return c, peakRSS(false)
}

// BenchmarkCapturePcap is offline capture on one core: read the 1 GiB
// pcap, reassemble, parse, anonymize, and write a compressed trace (to
// nowhere). It prints MB/s of pcap, packets/s and the peak RSS.
func BenchmarkCapturePcap(b *testing.B) {
	path := benchPcap(b)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var c Counters
	var peak int64
	for b.Loop() {
		var p int64
		c, p = benchCapture(b, path, 1)
		peak = max(peak, p)
	}
	secs := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(st.Size())/1e6/secs, "MB/s")
	b.ReportMetric(float64(c.Packets)/secs, "packets/s")
	b.ReportMetric(float64(c.Records)/secs, "records/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(st.Size())/(1<<20), "pcap-MiB")
	b.ReportMetric(0, "ns/op")
}

// selfCPU is this process's CPU time so far, user and system, every
// thread's (tshark, a child, is not counted).
func selfCPU(b *testing.B) time.Duration {
	p, err := cpustat.ReadProc("self")
	if err != nil {
		b.Fatal(err)
	}
	return p.CPU
}

// BenchmarkVersusTshark: offline capture of one 256 MiB pcap by hubreplay
// (reassembly, HTTP and WebSocket parsing, anonymization, a compressed
// trace) and by tshark decoding the same file with its HTTP and WebSocket
// dissectors (tcp.port 8000 decoded as HTTP, every HTTP message and
// WebSocket frame printed as fields), one after the other. hubreplay runs
// on two cores (GOMAXPROCS 2: reassembly and parsing beside anonymizing and
// writing) and again on one; tshark is single-threaded. Prints each one's
// MB/s, the peak RSS of the two-core run, the ratios, and how many cores
// the two-core run kept busy (its CPU time over its wall time).
func BenchmarkVersusTshark(b *testing.B) {
	tshark := testenv.Need(b, "tshark")
	path := benchPcapOf(b, 256<<20, "bench-v1-256M.pcap")
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	mb := float64(st.Size()) / 1e6
	for b.Loop() {
		start, cpu0 := time.Now(), selfCPU(b)
		c, peak := benchCapture(b, path, 2)
		wall := time.Since(start)
		ours, cores := mb/wall.Seconds(), float64(selfCPU(b)-cpu0)/float64(wall)
		if c.Exchanges == 0 || c.Frames == 0 {
			b.Fatalf("hubreplay found %d HTTP exchanges and %d frames", c.Exchanges, c.Frames)
		}
		start = time.Now()
		c1, _ := benchCapture(b, path, 1)
		oneCore := mb / time.Since(start).Seconds()
		if c1.Records != c.Records {
			b.Fatalf("on one core %d records, on two %d", c1.Records, c.Records)
		}

		cmd := exec.Command(tshark, "-r", path, "-n", "-d", "tcp.port==8000,http", "-Y", "http || websocket",
			"-T", "fields", "-e", "frame.number", "-e", "http.request.method", "-e", "http.response.code", "-e", "websocket.opcode")
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start = time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var lines int
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines++
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("tshark: %v: %s", err, stderr.String())
		}
		theirs := mb / time.Since(start).Seconds()
		if lines == 0 {
			b.Fatalf("tshark dissected no HTTP or WebSocket: %s", stderr.String())
		}
		theirPeak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10

		b.ReportMetric(ours, "hubreplay-MB/s")
		b.ReportMetric(oneCore, "hubreplay-1core-MB/s")
		b.ReportMetric(theirs, "tshark-MB/s")
		b.ReportMetric(ours/theirs, "hubreplay/tshark")
		b.ReportMetric(oneCore/theirs, "hubreplay-1core/tshark")
		b.ReportMetric(cores, "hubreplay-cores-busy")
		b.ReportMetric(float64(peak)/(1<<20), "hubreplay-peak-MiB")
		b.ReportMetric(float64(theirPeak)/(1<<20), "tshark-peak-MiB")
		b.Logf("%.0f MB: hubreplay %d HTTP exchanges + %d frames; tshark printed %d HTTP/WebSocket packets", mb, c.Exchanges, c.Frames, lines)
	}
	b.ReportMetric(0, "ns/op")
}

type discard struct{}

func (discard) Write(trace.Record) error { return nil }

// BenchmarkCaptureWorkers is the work spread by flow alone: the benchmark
// pcap reassembled and parsed by 1, 2 and 4 workers, raw, its records
// dropped (no anonymizing or writing), on every processor.
func BenchmarkCaptureWorkers(b *testing.B) {
	path := benchPcapOf(b, 256<<20, "bench-v1-256M.pcap")
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 2, 4} {
		b.Run(fmt.Sprint("workers-", n), func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				src, err := OpenFile(path)
				if err != nil {
					b.Fatal(err)
				}
				cpu0 := selfCPU(b)
				if _, err := Run(context.Background(), src, func(time.Time) (RecordWriter, error) { return discard{}, nil }, Options{Raw: true, Workers: n}); err != nil {
					b.Fatal(err)
				}
				cpu += selfCPU(b) - cpu0
				src.Close()
			}
			b.ReportMetric(float64(st.Size())/1e6/(b.Elapsed().Seconds()/float64(b.N)), "MB/s")
			b.ReportMetric(float64(cpu)/float64(b.Elapsed()), "cores-busy")
			b.ReportMetric(0, "ns/op")
		})
	}
}
