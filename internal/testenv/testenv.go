// Package testenv starts the real programs hubreplay's tests use: tcpdump
// to record loopback traffic, configurable-http-proxy from npm. A test that
// needs a program this machine lacks is skipped with the reason; .ci/run
// installs them, so CI runs every test.
package testenv

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Need skips the test unless the named program is on PATH. Where it must
// be there (HUBREPLAY_TEST_REQUIRE lists it, or says "all"; .ci/run sets
// it), its absence fails the test instead.
func Need(t testing.TB, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		if required(program) {
			t.Fatalf("%s is not installed, and HUBREPLAY_TEST_REQUIRE says it must be: %v", program, err)
		}
		t.Skipf("%s is not installed (.ci/run installs it): %v", program, err)
	}
	return p
}

// NoDocker is for tests that need a Docker engine, where none answers: it
// skips with why, or fails where an engine must be there
// (HUBREPLAY_REQUIRE_DOCKER=1, as the CI workflow's Docker job sets), so
// that a runner without one cannot pass those tests by skipping them.
func NoDocker(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("HUBREPLAY_REQUIRE_DOCKER") == "1" {
		t.Fatalf("%s, and HUBREPLAY_REQUIRE_DOCKER=1 says one must", why)
	}
	t.Skip(why)
}

// Kubeconfig is the kubeconfig of a real cluster the tests may use (a
// kind cluster made for them: they create pods in its default namespace),
// from HUBREPLAY_TEST_KUBECONFIG. Where none is given the test skips, or
// fails where one must be (HUBREPLAY_TEST_REQUIRE names "cluster"): no
// cluster runs on this project's own machines, so what only a kubelet
// does (exec, image pulls) is tested where one does.
func Kubeconfig(t testing.TB) string {
	t.Helper()
	path := os.Getenv("HUBREPLAY_TEST_KUBECONFIG")
	if path == "" {
		if required("cluster") {
			t.Fatal("HUBREPLAY_TEST_KUBECONFIG is not set, and HUBREPLAY_TEST_REQUIRE says a cluster must be there")
		}
		t.Skip("no cluster here: set HUBREPLAY_TEST_KUBECONFIG to a kubeconfig of a cluster the tests may use (kind create cluster)")
	}
	return path
}

// MemoryCgroup skips the test unless a cgroup v1 memory controller is
// writable here (root), as on this project's CI machines; where it must
// be (HUBREPLAY_TEST_REQUIRE lists "cgroup"), its absence fails the test.
func MemoryCgroup(t testing.TB) {
	t.Helper()
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes")
	if err == nil && os.Geteuid() == 0 {
		return
	}
	why := "needs a writable cgroup v1 memory controller (root)"
	if required("cgroup") {
		t.Fatalf("%s, and HUBREPLAY_TEST_REQUIRE says one must be here", why)
	}
	t.Skip(why + "; the cgroup v2 ways are tested against a laid-out cgroupfs")
}

func required(program string) bool {
	for _, p := range strings.FieldsFunc(os.Getenv("HUBREPLAY_TEST_REQUIRE"), func(r rune) bool { return r == ',' || r == ' ' }) {
		if p == program || p == "all" {
			return true
		}
	}
	return false
}

// Dump is a running tcpdump.
type Dump struct {
	settle  time.Duration // how long packets may take to reach the file
	cmd     *exec.Cmd
	stderr  *Buffer
	dropped *regexp.Regexp
	Path    string
}

// Tcpdump records loopback traffic matching filter into path (pcap) with
// the given extra arguments (e.g. "-i", "any", "-y", "LINUX_SLL2"); it
// returns once tcpdump is listening.
func Tcpdump(t testing.TB, path, filter string, args ...string) *Dump {
	t.Helper()
	if !contains(args, "-i") {
		args = append(args, "-i", "lo")
	}
	// --immediate-mode: packets reach the file as they come, not when a
	// ring block fills, so none are still in the kernel when it stops;
	// -B 256 MiB and -s 65600: immediate mode puts libpcap on TPACKET_V2
	// (strace shows PACKET_VERSION 1), a ring of fixed slots sized for the
	// snapshot length; with -s 0 a slot can hold 256 KiB, and tcpdump on a
	// busy CI machine let a 128 MiB ring fill (256 dropped on "any"). 65600 holds the
	// largest loopback packet (MTU 65536, gso_max_size 65536) and its link
	// header, and gives ~4000 slots; a longer packet would show as a
	// truncation in the capture, not pass unseen.
	// -Z root: tcpdump must not drop to its own user, who may not be able
	// to write into the test's directory.
	all := append(append([]string{"--immediate-mode", "-B", "262144", "-s", "65600", "-U", "-Z", "root", "-w", path}, args...), filter)
	return record(t, "tcpdump", all, "listening on", `(\d+) packets? dropped by kernel`, path, 200*time.Millisecond)
}

func record(t testing.TB, program string, args []string, readyMarker, dropped, path string, settle time.Duration) *Dump {
	t.Helper()
	bin := Need(t, program)
	if os.Geteuid() != 0 {
		t.Skipf("%s needs root to capture; CI runs as root", program)
	}
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	buf := &Buffer{}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", program, err)
	}
	d := &Dump{settle: settle, cmd: cmd, stderr: buf, dropped: regexp.MustCompile(dropped), Path: path}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			buf.write(sc.Text() + "\n")
			if strings.Contains(sc.Text(), readyMarker) {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%s did not start capturing in 10 s: %s", program, buf.String())
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		pw.Close()
	})
	return d
}

// Stop lets the last packets reach the recorder and stops it. A capture
// that dropped packets fails the test: what follows would check a broken
// file.
func (d *Dump) Stop(t testing.TB) {
	t.Helper()
	time.Sleep(d.settle) // let the last packets reach the file
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		t.Fatalf("%s did not stop in 10 s", d.cmd.Path)
	}
	time.Sleep(50 * time.Millisecond) // the stderr reader's last lines
	out := d.stderr.String()
	if m := d.dropped.FindStringSubmatch(out); m == nil || m[1] != "0" {
		t.Fatalf("%s dropped packets or did not say; the capture %s is not whole:\n%s", d.cmd.Path, d.Path, out)
	}
}

// Buffer collects a program's output and can be read while it still
// writes.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Buffer) write(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

// Write adds p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.write(string(p))
	return len(p), nil
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reset empties it.
func (l *Buffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// CacheRoot is the tests' cache: $HUBREPLAY_TEST_CACHE, else the user
// cache directory's hubreplay-test, never the cache hubreplay itself uses.
func CacheRoot() string {
	if dir := os.Getenv("HUBREPLAY_TEST_CACHE"); dir != "" {
		return dir
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "hubreplay-test")
}

// CacheDir is where tests keep npm installs between runs:
// $HUBREPLAY_TEST_CACHE, else the user cache directory.
func CacheDir(t testing.TB) string {
	t.Helper()
	dir := CacheRoot()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("test cache: %v", err)
	}
	return dir
}

var chpMu sync.Mutex

// CHP returns the path of configurable-http-proxy's bin script at version,
// installing it from npm into the test cache the first time.
func CHP(t testing.TB, version string) string {
	t.Helper()
	Need(t, "node")
	npm := Need(t, "npm")
	chpMu.Lock()
	defer chpMu.Unlock()
	dir := filepath.Join(CacheDir(t), "chp@"+version)
	bin := filepath.Join(dir, "node_modules", "configurable-http-proxy", "bin", "configurable-http-proxy")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--prefix", dir, "configurable-http-proxy@"+version)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm install configurable-http-proxy@%s: %v\n%s", version, err, out)
	}
	return bin
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitListening waits until something accepts connections on addr.
func WaitListening(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after %s: %v", addr, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Start runs a command for the length of the test, its output in the
// test log on failure.
func Start(t testing.TB, name string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out Buffer
	w := writerFunc(func(p []byte) (int, error) { out.write(string(p)); return len(p), nil })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(name), out.String())
		}
	})
	return cmd
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// GoReplay is the path of GoReplay (github.com/buger/goreplay), built from
// the Go module proxy into the test cache the first time. It links libpcap
// through cgo, so it needs libpcap's headers (Debian: libpcap-dev); the
// benchmark that compares with it is skipped with the reason when it cannot
// be built.
func GoReplay(t testing.TB) string {
	t.Helper()
	const version = "v1.3.2"
	bin := filepath.Join(CacheDir(t), "goreplay@"+version, "goreplay")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/buger/goreplay@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Dir(bin), "CGO_ENABLED=1", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("GoReplay %s could not be built (it needs libpcap-dev; make bench installs it): %v\n%s", version, err, out)
	}
	return bin
}
