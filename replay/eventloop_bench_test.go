//go:build linux

package replay_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/hubreplay/hubreplay/internal/testenv"
)

// BenchmarkEventLoopVersusCHP: the two designs that looked like ways to
// halve the harness's CPU per WebSocket frame, built at their barest and
// measured next to CHP 4.6.2 carrying the same frames. The traffic is
// BenchmarkHarnessVersusCHP's websocket run (200 sessions through CHP, a
// 400-byte masked client frame and a 600-byte server answer on each every
// 150 ms, for 10 s), played by one loop in one thread that holds both
// ends' sockets and polls them level-triggered with raw system calls: no
// Go poller, scheduler, parsing, matching or records. It sends each client
// frame when a timer says it is due and answers each client frame as soon
// as it is read.
//
//   - eager: the loop wakes for every arrival, as a faithful replay must
//     (a client reads what the proxy sends when it comes).
//   - lazy: the loop wakes only when a client frame is due and reads what
//     arrived meanwhile: one read and one write per frame and a third of
//     the wake-ups, a bound for any harness that sends and reads each
//     frame (the answers go late, so it is not a faithful replay).
//   - lazy-10ms: lazy, and the client frames sent in bursts every 10 ms,
//     what came due meanwhile: a twentieth of the wake-ups, what is left
//     being the system calls alone.
//
// Per frame the proxy reads once and writes once; so does a harness,
// one end writing, the other reading, and a write on loopback carries the
// receiving side's TCP work too. The figures say how much of the proxy's
// per-frame CPU is those system calls, which no harness can avoid.
func BenchmarkEventLoopVersusCHP(b *testing.B) {
	testenv.Need(b, "node")
	for _, v := range []struct {
		name string
		lazy bool
		tick time.Duration
	}{{"eager", false, 0}, {"lazy", true, 0}, {"lazy-10ms", true, 10 * time.Millisecond}} {
		b.Run(v.name, func(b *testing.B) {
			const conns, every, length = 200, 150 * time.Millisecond, 10 * time.Second
			srv := upgradeServer(b, conns)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			chp := startCHP(ctx, b, srv.url)
			defer chp.Stop()
			ends := srv.connect(b, chp.URL())
			var frames, wakes int
			var self, proxyCPU time.Duration
			for b.Loop() {
				self0, chp0 := procCPU(b, os.Getpid()), chp.Sample(ctx).CPU
				w, err := ends.play(v.lazy, v.tick, every, int(length/every))
				if err != nil {
					b.Fatal(err)
				}
				self += procCPU(b, os.Getpid()) - self0
				proxyCPU += chp.Sample(ctx).CPU - chp0
				frames += 2 * conns * int(length/every) // sent and received, as the harness counts them
				wakes += w
			}
			b.ReportMetric(float64(self.Microseconds())/float64(frames), "loop-µs/frame")
			b.ReportMetric(float64(proxyCPU.Microseconds())/float64(frames), "chp-µs/frame")
			b.ReportMetric(float64(self)/float64(proxyCPU), "loop/chp")
			b.ReportMetric(float64(wakes)/float64(frames), "wakes/frame")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// loopServer accepts WebSocket upgrades (answering 101 without checks:
// nothing here parses frames) and hands over the upgraded sockets.
type loopServer struct {
	url      string
	upgraded chan net.Conn
}

func upgradeServer(b *testing.B, conns int) *loopServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	s := &loopServer{url: "http://" + ln.Addr().String(), upgraded: make(chan net.Conn, conns)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				req, err := http.ReadRequest(bufio.NewReader(c)) // the request ends the bytes sent before the 101
				if err != nil {
					c.Close()
					return
				}
				_ = req.Body.Close()
				_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"))
				s.upgraded <- c
			}()
		}
	}()
	return s
}

// loopEnds are both ends of every session, as raw non-blocking sockets.
type loopEnds struct {
	client, server []int
	files          []*os.File // what keeps the descriptors open
}

// connect opens cap(s.upgraded) sessions through the proxy at url.
func (s *loopServer) connect(b *testing.B, url string) *loopEnds {
	e := &loopEnds{}
	b.Cleanup(func() {
		for _, f := range e.files {
			f.Close()
		}
	})
	addr := strings.TrimPrefix(url, "http://")
	for i := range cap(s.upgraded) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "GET /loop/%d HTTP/1.1\r\nHost: loop\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", i)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		// Byte by byte to the end of the 101: nothing after it is read.
		var head []byte
		for one := make([]byte, 1); !strings.HasSuffix(string(head), "\r\n\r\n"); head = append(head, one[0]) {
			if _, err := c.Read(one); err != nil {
				b.Fatalf("session %d: the upgrade through the proxy: %v", i, err)
			}
		}
		if !strings.HasPrefix(string(head), "HTTP/1.1 101") {
			b.Fatalf("session %d: the proxy answered %q", i, head)
		}
		var sc net.Conn
		select {
		case sc = <-s.upgraded:
		case <-time.After(5 * time.Second):
			b.Fatalf("session %d: the upgrade never reached the server", i)
		}
		e.client = append(e.client, e.raw(b, c))
		e.server = append(e.server, e.raw(b, sc))
	}
	return e
}

// raw takes c's socket out of Go's poller: a copy of its descriptor, made
// non-blocking, and c closed.
func (e *loopEnds) raw(b *testing.B, c net.Conn) int {
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		b.Fatal(err)
	}
	_ = c.Close()
	e.files = append(e.files, f)
	fd := int(f.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		b.Fatal(err)
	}
	return fd
}

// play sends rounds client frames on every session, spread evenly over
// every as benchTrace spreads them, answers each with a server frame, and
// returns once every answer came back, with the number of wake-ups.
func (e *loopEnds) play(lazy bool, tick, every time.Duration, rounds int) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	conns := len(e.client)
	wait, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return 0, err
	}
	defer unix.Close(wait)
	sockets := wait // eager: one set, woken by anything
	if lazy {
		// Lazy: woken by the timer alone; the sockets polled after.
		if sockets, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			return 0, err
		}
		defer unix.Close(sockets)
	}
	timer, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return 0, err
	}
	defer unix.Close(timer)
	add := func(set, fd, id int) {
		if err == nil {
			err = unix.EpollCtl(set, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(id)})
		}
	}
	add(wait, timer, -1)
	for i := range conns {
		add(sockets, e.client[i], i)
		add(sockets, e.server[i], conns+i)
	}
	defer func() {
		for i := range conns {
			_ = unix.EpollCtl(sockets, unix.EPOLL_CTL_DEL, e.client[i], nil)
			_ = unix.EpollCtl(sockets, unix.EPOLL_CTL_DEL, e.server[i], nil)
		}
	}()
	if err != nil {
		return 0, err
	}

	clientFrame := wsFrame(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 400, Masked: true, Mask: [4]byte{1, 2, 3, 4}})
	serverFrame := wsFrame(ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 600})
	clientLen, serverLen := len(clientFrame), len(serverFrame) // with their headers
	gap := every / time.Duration(conns)
	total := rounds * conns
	got := make([]int, 2*conns) // bytes read on each socket
	var sent, received, wakes int
	buf := make([]byte, 64<<10)
	start := time.Now() // the vDSO's clock: no system call
	due := func(j int) time.Duration {
		at := time.Duration(j+1) * gap
		if tick > 0 {
			at = (at + tick - 1) / tick * tick // the next tick's: sent in bursts
		}
		return at
	}
	arm := func(at time.Duration) error { // at: since start
		it := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(max(at-time.Since(start), 1)))} // 0 would disarm it
		_, _, errno := unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, uintptr(timer), 0, uintptr(unsafe.Pointer(&it)), 0, 0, 0)
		if errno != 0 {
			return fmt.Errorf("arming the timer: %w", errno)
		}
		return nil
	}
	if err := arm(due(0)); err != nil {
		return 0, err
	}
	deadline := time.Duration(rounds)*every + 10*time.Second
	events := make([]unix.EpollEvent, 2*(2*conns+1))
	for received < total {
		if time.Since(start) > deadline {
			return wakes, fmt.Errorf("%d of %d client frames sent, %d of %d answers back by the deadline", sent, total, received, total)
		}
		// At most 50 ms blocked: this thread does not tell the runtime it
		// waits (that costs a wake-up of its own), so a garbage collection
		// waits for it.
		n, err := epollWait(wait, events[:len(events)/2], 50)
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			return wakes, fmt.Errorf("waiting: %w", err)
		}
		wakes++
		if lazy {
			m, _ := epollWait(sockets, events[n:], 0)
			n += m
		}
		for _, ev := range events[:n] {
			switch id := int(ev.Fd); {
			case id < 0:
				_, _ = rawRead(timer, buf[:8])
				for t := time.Since(start); sent < total && due(sent) <= t; sent++ {
					if _, err := rawWrite(e.client[sent%conns], clientFrame); err != nil {
						return wakes, fmt.Errorf("sending a client frame: %w", err)
					}
				}
				next := time.Since(start) + time.Millisecond // lazy: a tick to read the last answers
				if sent < total {
					next = due(sent)
				}
				if err := arm(next); err != nil {
					return wakes, err
				}
			case id < conns:
				m, err := rawRead(e.client[id], buf)
				if err := readErr(m, err); err != nil {
					return wakes, fmt.Errorf("reading answers: %w", err)
				}
				received += (got[id]+m)/serverLen - got[id]/serverLen
				got[id] += m
			default:
				m, err := rawRead(e.server[id-conns], buf)
				if err := readErr(m, err); err != nil {
					return wakes, fmt.Errorf("reading client frames: %w", err)
				}
				for range (got[id]+m)/clientLen - got[id]/clientLen {
					if _, err := rawWrite(e.server[id-conns], serverFrame); err != nil {
						return wakes, fmt.Errorf("answering: %w", err)
					}
				}
				got[id] += m
			}
		}
	}
	return wakes, nil
}

// wsFrame is a whole frame with header h and h.Length bytes of payload
// (its content does not matter: nothing on the way parses it).
func wsFrame(h ws.Header) []byte {
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, h) // to memory: cannot fail
	b.Write(make([]byte, h.Length))
	return b.Bytes()
}

// readErr is what a read that woke for a readable socket found wrong: an
// error, or the proxy's end of the session.
func readErr(n int, err error) error {
	switch {
	case err == unix.EAGAIN:
		return nil
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("the proxy closed a session")
	}
	return nil
}

// Raw system calls: through the runtime's syscall state each would wake its
// system monitor (internal/rawio says why), which tripled this loop's CPU.
func epollWait(epfd int, events []unix.EpollEvent, ms int) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(ms), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func rawRead(fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	if n != uintptr(len(p)) {
		return int(n), fmt.Errorf("a short write (%d of %d bytes)", n, len(p))
	}
	return int(n), nil
}
