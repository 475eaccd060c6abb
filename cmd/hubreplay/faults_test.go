package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/trace"
)

// TestMain lets fault tests run hubreplay as a process of its own (this
// test binary, re-executed), so that it can be killed.
func TestMain(m *testing.M) {
	if os.Getenv("HUBREPLAY_TEST_RUN_MAIN") != "" {
		main()
		return
	}
	// What the commands keep (candidates, the harness's capacity) goes to
	// the tests' cache, not the user's: a test's toy proxy is no record of
	// what this machine's harness holds.
	if os.Getenv("HUBREPLAY_CACHE") == "" {
		os.Setenv("HUBREPLAY_CACHE", filepath.Join(testenv.CacheRoot(), "cli"))
	}
	os.Exit(m.Run())
}

// command is hubreplay args as a process of its own.
func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HUBREPLAY_TEST_RUN_MAIN=1")
	return cmd
}

// ticker sends numbered requests (…?_=N, a cache-busting counter as browsers send) to a JupyterHub-like server on
// one keep-alive connection until stopped, and remembers when each answer
// had fully arrived.
type ticker struct {
	mu   sync.Mutex
	done map[int]time.Time
	stop chan struct{}
	wg   sync.WaitGroup
}

func startTicker(t *testing.T, addr string, gap time.Duration) *ticker {
	tk := &ticker{done: map[int]time.Time{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	tk.wg.Go(func() {
		defer client.CloseIdleConnections()
		for n := 0; ; n++ {
			select {
			case <-tk.stop:
				return
			case <-time.After(gap):
			}
			resp, err := client.Get(fmt.Sprintf("http://%s/user/x/api/contents?size=300&_=%d", addr, n))
			if err != nil {
				continue
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				tk.mu.Lock()
				tk.done[n] = time.Now()
				tk.mu.Unlock()
			}
		}
	})
	t.Cleanup(tk.halt)
	return tk
}

func (tk *ticker) halt() {
	select {
	case <-tk.stop:
	default:
		close(tk.stop)
	}
	tk.wg.Wait()
}

// captured reads the numbered requests in a trace file as far as it reads,
// and the error that ended the reading.
func captured(t *testing.T, path string) (map[int]bool, error) {
	t.Helper()
	r, err := trace.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	seen := map[int]bool{}
	err = r.Each(context.Background(), nil, func(rec trace.Record) error {
		if h, ok := rec.(*trace.HTTP); ok {
			if u, err := url.Parse(h.Req.Target); err == nil && u.Query().Get("_") != "" {
				n, _ := strconv.Atoi(u.Query().Get("_"))
				seen[n] = true
			}
		}
		return nil
	})
	return seen, err
}

// A live capture SIGKILLed at a random moment leaves a trace that reads
// to its last whole frame, and holds every exchange that had ended more
// than a second before the kill (the writer's flush interval; half a
// second more for the scheduling of a race-detector binary on a busy
// machine).
func TestCaptureKilledAtRandomMoments(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture needs root or CAP_NET_RAW; CI runs as root")
	}
	addr, port := testenv.Serve(t)
	tk := startTicker(t, addr, 5*time.Millisecond)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 9))
	t.Logf("seed %d", seed)
	for i := range 3 {
		out := filepath.Join(t.TempDir(), fmt.Sprintf("killed%d.trace", i))
		cmd := command("capture", "--iface", "lo", "--port", strconv.Itoa(port), "-o", out)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		// Wait until the first frame is on disk, then kill it at a
		// random moment within the next 2.5 s.
		deadline := time.Now().Add(20 * time.Second)
		for {
			seen, _ := captured(t, out)
			if len(seen) > 0 {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("nothing captured in 20 s: %s", stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		after := time.Duration(rng.Int64N(int64(2500 * time.Millisecond)))
		time.Sleep(after)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		killed := time.Now()
		_ = cmd.Wait()

		seen, err := captured(t, out)
		if err != nil {
			var d *trace.DamageError
			require.ErrorAs(t, err, &d, "the only damage a kill leaves is a cut at the end")
			assert.NotContains(t, err.Error(), "\n")
		}
		first := -1
		for n := range seen {
			if first < 0 || n < first {
				first = n
			}
		}
		tk.mu.Lock()
		var lost []int
		for n, at := range tk.done {
			if n >= first && at.Before(killed.Add(-1500*time.Millisecond)) && !seen[n] {
				lost = append(lost, n)
			}
		}
		tk.mu.Unlock()
		assert.Empty(t, lost, "killed %s after its first frame: exchanges that had ended more than 1.5 s before the kill are missing", after)
		t.Logf("kill %d, %s after the first frame: %d exchanges in the trace (%v)", i, after.Round(time.Millisecond), len(seen), err)
	}
}

// A disk that fills up during a live capture stops it with a one-line
// error that names the file, and what reached the disk reads back.
func TestCaptureOnAFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill needs root; CI runs as root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	// Fill it to 32 KiB of free space: a few one-second frames fit.
	fill, err := os.Create(filepath.Join(dir, "fill"))
	require.NoError(t, err)
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &st))
	_, err = fill.Write(make([]byte, int64(st.Bavail)*st.Bsize-32<<10))
	require.NoError(t, err)
	require.NoError(t, fill.Close())

	addr, port := testenv.Serve(t)
	startTicker(t, addr, 2*time.Millisecond)
	out := filepath.Join(dir, "full.trace")
	cmd := command("capture", "--iface", "lo", "--port", strconv.Itoa(port), "-o", out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	bound := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer bound.Stop()
	runErr := cmd.Wait()
	var exit *exec.ExitError
	require.True(t, errors.As(runErr, &exit), "capture ends on its own with an error: %v\n%s", runErr, stderr.String())
	assert.Equal(t, 2, exit.ExitCode())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	assert.Contains(t, last, "full.trace")
	assert.Contains(t, last, "no space left on device")

	seen, err := captured(t, out)
	if err != nil {
		var d *trace.DamageError
		require.ErrorAs(t, err, &d, "a full disk leaves at most a cut at the end")
	}
	assert.NotEmpty(t, seen, "the exchanges that fitted read back")
	t.Logf("%d exchanges fitted; capture said: %s", len(seen), last)
}

// Traces and results cut off or corrupted at random offsets, given to
// every command that reads them: each ends with one line that names the
// file and the byte, and status 2 (bad input: never 1, which CI takes for
// a regression), never a panic or a silent success.
func TestDamagedFilesAtRandomOffsets(t *testing.T) {
	tr, _, _ := sampleFile(t)
	dir := t.TempDir()
	res := filepath.Join(dir, "r.results")
	r := hubreplay(t, nil, "replay", "--trace", tr, "--target", fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), "--fixtures=false",
		"--speed", "max", "--duration", "3s", "-o", res)
	require.Equal(t, 0, r.code, r.stderr)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 3))
	t.Logf("seed %d", seed)

	verbs := map[string]func(path string) []string{
		"inspect": func(p string) []string { return []string{"inspect", p} },
		"verify":  func(p string) []string { return []string{"verify", p} },
		"cat":     func(p string) []string { return []string{"cat", p} },
		"slice":   func(p string) []string { return []string{"slice", p, "--from", "+1m", "-o", p + ".slice"} },
		"replay": func(p string) []string {
			return []string{"replay", "--trace", p, "--target", "http://127.0.0.1:9", "--fixtures=false", "--speed", "max", "--duration", "1s", "-o", p + ".results"}
		},
	}
	resultVerbs := map[string]func(path string) []string{
		"results": func(p string) []string { return []string{"results", p} },
		"report":  func(p string) []string { return []string{"report", res, p, "-o", p + ".report"} },
	}
	for _, f := range []struct {
		path  string
		verbs map[string]func(string) []string
	}{{tr, verbs}, {res, resultVerbs}} {
		data, err := os.ReadFile(f.path)
		require.NoError(t, err)
		for i := range 8 {
			// Past the first 64 bytes (the header frame): a damaged header
			// is another error, tested with the trace package.
			off := 64 + rng.IntN(len(data)-64)
			damaged := append([]byte(nil), data...)
			how := "cut"
			if i%2 == 0 {
				damaged = damaged[:off]
			} else {
				how = "corrupted"
				for k := range 4 {
					if off+k < len(damaged) {
						damaged[off+k] ^= byte(1 + rng.IntN(255))
					}
				}
			}
			name := filepath.Join(dir, fmt.Sprintf("%s-%s-at-%d%s", strings.TrimSuffix(filepath.Base(f.path), filepath.Ext(f.path)), how, off, filepath.Ext(f.path)))
			require.NoError(t, os.WriteFile(name, damaged, 0o644))
			for verb, args := range f.verbs {
				r := hubreplay(t, nil, args(name)...)
				assert.Equal(t, 2, r.code, "%s on a file %s at byte %d: %s", verb, how, off, r.stderr)
				lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
				last := lines[len(lines)-1]
				assert.Contains(t, last, filepath.Base(name), "%s: the error names the file", verb)
				assert.Regexp(t, `byte \d+`, last, "%s: the error says where", verb)
				assert.NotContains(t, r.stderr, "panic", verb)
				assert.Equal(t, 1, strings.Count(last, filepath.Base(name)), "%s names the file once: %s", verb, last)
			}
		}
	}
}
