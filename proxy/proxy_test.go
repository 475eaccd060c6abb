package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/internal/testenv"
)

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"chp@4.5.6":   {Raw: "chp@4.5.6", Kind: KindNPM, Version: "4.5.6"},
		"chp@latest":  {Raw: "chp@latest", Kind: KindNPM, Version: "latest"},
		"chp:../fork": {Raw: "chp:../fork", Kind: KindPath, Path: "../fork"},
		"image:jupyterhub/configurable-http-proxy:4.6.3": {Raw: "image:jupyterhub/configurable-http-proxy:4.6.3", Kind: KindImage, Image: "jupyterhub/configurable-http-proxy:4.6.3"},
		"cmd:./proxy --listen {port}":                    {Raw: "cmd:./proxy --listen {port}", Kind: KindCommand, Command: "./proxy --listen {port}"},
	} {
		got, err := ParseSpec(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
	for _, bad := range []string{"", "chp", "chp@", "chp@four", "chp:", "image:", "cmd:", "cmd:./proxy", "nginx"} {
		_, err := ParseSpec(bad)
		assert.Error(t, err, bad)
	}
}

func obtain(t *testing.T, spec string) *Program {
	t.Helper()
	testenv.Need(t, "node")
	testenv.Need(t, "npm")
	s, err := ParseSpec(spec)
	require.NoError(t, err)
	// The tests' cache: make chp fills it, and testenv.CHP uses it too.
	p, err := Obtain(context.Background(), s, &Cache{Dir: testenv.CacheDir(t)})
	require.NoError(t, err)
	return p
}

func start(t *testing.T, p *Program, o Options) *Candidate {
	t.Helper()
	c, err := Start(context.Background(), p, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

func addRoute(t *testing.T, c *Candidate, path, target string) {
	t.Helper()
	req, _ := http.NewRequest("POST", c.APIURL()+"/api/routes"+path, strings.NewReader(`{"target":"`+target+`"}`))
	req.Header.Set("Authorization", "token "+c.Token())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
}

// TestRealCHPRunsAndIsMeasured starts two releases, proxies a request and
// a WebSocket, and checks that the samples move when load arrives.
func TestRealCHPRunsAndIsMeasured(t *testing.T) {
	for _, version := range []string{"4.5.6", "5.3.0"} {
		t.Run(version, func(t *testing.T) {
			p := obtain(t, "chp@"+version)
			assert.Equal(t, version, p.Version)
			assert.True(t, p.HasMetrics)
			backend, _ := testenv.Serve(t)
			c := start(t, p, Options{DefaultTarget: "http://" + backend, SampleEvery: 200 * time.Millisecond})
			addRoute(t, c, "/user/"+testenv.User, "http://"+backend)

			resp, err := http.Get(c.URL() + "/user/" + testenv.User + "/api/contents?size=1234")
			require.NoError(t, err)
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, int64(1234), n)

			conn, _, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(c.URL(), "http")+"/user/"+testenv.User+"/api/kernels/k/channels")
			require.NoError(t, err)
			require.NoError(t, wsutil.WriteClientText(conn, []byte(`{"header":{}}`)))
			status, err := wsutil.ReadServerText(conn)
			require.NoError(t, err)
			assert.Contains(t, string(status), "execution_state")
			conn.Close()

			before := c.Sample(context.Background())
			require.True(t, before.Up)
			assert.Positive(t, before.RSS)
			assert.Positive(t, before.FDs)
			assert.Positive(t, before.HeapUsed, "Node's heap, from --metrics-port")
			assert.Positive(t, before.Probe, "the liveness probe was answered")
			assert.False(t, before.Unanswered)
			assert.GreaterOrEqual(t, before.Sockets["LISTEN"], 3, "it listens: public, API and metrics ports")

			// Load: 300 kernel WebSockets held open, as a lecture holds them
			// (CHP 4 closes a plain HTTP connection after each answer).
			var held []net.Conn
			for range 300 {
				wc, _, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(c.URL(), "http")+"/user/"+testenv.User+"/api/kernels/k/channels")
				require.NoError(t, err)
				held = append(held, wc)
			}
			after := c.Sample(context.Background())
			for _, wc := range held {
				wc.Close()
			}
			// (Not counted from before: the connections of the first request and
			// WebSocket may still be closing then.)
			assert.GreaterOrEqual(t, after.Sockets["ESTABLISHED"], 600, "each WebSocket holds a client and a backend socket")
			assert.GreaterOrEqual(t, after.FDs, before.FDs+500, "and their file descriptors")
			assert.GreaterOrEqual(t, after.SocketFDs, 600+after.Sockets["LISTEN"], "two socket descriptors per WebSocket, and its listeners")
			assert.Greater(t, after.RSS, before.RSS, "memory rises with the load")
			assert.Greater(t, after.CPU, before.CPU)
			assert.NotEmpty(t, c.Samples(), "the sampler ran")
		})
	}
}

func TestKilledCandidateIsRestarted(t *testing.T) {
	p := obtain(t, "chp@4.5.6")
	c := start(t, p, Options{RestartDelay: 300 * time.Millisecond})
	pid := c.Sample(context.Background()).PID
	c.Kill()
	require.Eventually(t, func() bool {
		s := c.Sample(context.Background())
		return c.Starts() == 2 && s.Up && s.PID != pid
	}, 20*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		resp, err := http.Get(c.URL() + "/_chp_healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, 20*time.Second, 50*time.Millisecond, "the restarted proxy answers on the same port")
	exits := c.Exits()
	require.Len(t, exits, 1)
	assert.Equal(t, "killed", exits[0].Signal)
	assert.Equal(t, "killed by signal: killed", exits[0].Cause)
	assert.False(t, exits[0].Stopped)

	require.NoError(t, c.Stop())
	exits = c.Exits()
	require.Len(t, exits, 2)
	assert.True(t, exits[1].Stopped, "the last exit was hubreplay stopping it")
}

// hog is a candidate that grows without bound once asked: the shape of
// the incident's leak, made fast.
const hog = `cmd:node %s -e "require('http').createServer((q,r)=>{r.end('ok'); const a=[]; setInterval(()=>{ %s },5)}).listen({port},'127.0.0.1')"`

func TestMemoryLimitOOMKill(t *testing.T) {
	testenv.MemoryCgroup(t)
	s, err := ParseSpec(fmt.Sprintf(hog, "", "a.push(Buffer.alloc(4<<20,1))"))
	require.NoError(t, err)
	p, err := Obtain(context.Background(), s, nil)
	require.NoError(t, err)
	c := start(t, p, Options{MemoryLimit: 96 << 20, LimitBy: "cgroup", RestartDelay: time.Hour})
	assert.Contains(t, c.Limit(), "cgroup v1 memory limit 96 MiB")
	resp, err := http.Get(c.URL())
	require.NoError(t, err)
	resp.Body.Close()
	require.Eventually(t, func() bool { return len(c.Exits()) == 1 }, 30*time.Second, 50*time.Millisecond)
	e := c.Exits()[0]
	assert.True(t, e.OOM, "%+v", e)
	assert.Equal(t, "OOM-killed at the memory limit", e.Cause)
	assert.Equal(t, "killed", e.Signal)
}

func TestHeapLimitExit(t *testing.T) {
	testenv.Need(t, "node")
	s, err := ParseSpec(fmt.Sprintf(hog, "--max-old-space-size=24", "for(let i=0;i<20000;i++) a.push({i, s: 'x'+i})"))
	require.NoError(t, err)
	p, err := Obtain(context.Background(), s, nil)
	require.NoError(t, err)
	c := start(t, p, Options{RestartDelay: time.Hour})
	resp, err := http.Get(c.URL())
	require.NoError(t, err)
	resp.Body.Close()
	require.Eventually(t, func() bool { return len(c.Exits()) == 1 }, 60*time.Second, 50*time.Millisecond)
	e := c.Exits()[0]
	assert.True(t, e.HeapLimit, "%+v", e)
	assert.Equal(t, "Node's heap limit (JavaScript heap out of memory)", e.Cause)
	assert.NotEmpty(t, e.Last)
	assert.Positive(t, c.Sample(context.Background()).Logs["heap_limit"])
}

// TestForkCheckout runs a chp:PATH candidate made from the npm package's
// own files, as a fork's checkout would be.
func TestForkCheckout(t *testing.T) {
	p := obtain(t, "chp@4.5.6")
	pkg := filepath.Dir(filepath.Dir(p.Args[0]))
	fork := filepath.Join(t.TempDir(), "my-fork")
	out, err := exec.Command("cp", "-r", pkg, fork).CombinedOutput()
	require.NoError(t, err, string(out))
	require.NoError(t, os.RemoveAll(filepath.Join(fork, "node_modules")))

	s, err := ParseSpec("chp:" + fork)
	require.NoError(t, err)
	fp, err := Obtain(context.Background(), s, nil)
	require.NoError(t, err, "npm install in the checkout")
	assert.Equal(t, "4.5.6", fp.Version)
	c := start(t, fp, Options{})
	resp, err := http.Get(c.URL() + "/_chp_healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	// Not a checkout: a clear error.
	s, _ = ParseSpec("chp:" + t.TempDir())
	_, err = Obtain(context.Background(), s, nil)
	assert.ErrorContains(t, err, "is not a configurable-http-proxy checkout")
}

func TestUnknownVersion(t *testing.T) {
	testenv.Need(t, "npm")
	s, _ := ParseSpec("chp@0.0.1")
	_, err := Obtain(context.Background(), s, &Cache{Dir: t.TempDir()})
	assert.ErrorContains(t, err, "npm has no configurable-http-proxy 0.0.1")
}

// TestImageCandidates runs CHP's own image where a Docker engine answers
// (the CI workflow's docker job has one); here it checks the error and skips,
// or fails where HUBREPLAY_REQUIRE_DOCKER=1.
func TestImageCandidates(t *testing.T) {
	s, err := ParseSpec("image:quay.io/jupyterhub/configurable-http-proxy:4.6.3")
	require.NoError(t, err)
	host, ok := DockerEngine()
	p, err := Obtain(context.Background(), s, nil)
	if !ok {
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no Docker engine answers at "+host)
		testenv.NoDocker(t, fmt.Sprintf("no Docker engine answers at %s (the docker client is installed, the engine is not): image candidates cannot run here", host))
	}
	require.NoError(t, err)
	backend, _ := testenv.Serve(t)
	c := start(t, p, Options{DefaultTarget: "http://" + backend, RestartDelay: 500 * time.Millisecond, ReadyTimeout: 5 * time.Minute})
	addRoute(t, c, "/user/"+testenv.User, "http://"+backend)
	resp, err := http.Get(c.URL() + "/user/" + testenv.User + "/api/contents?size=77")
	require.NoError(t, err)
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, int64(77), n)
	s1 := c.Sample(context.Background())
	assert.True(t, s1.Up)
	assert.Positive(t, s1.RSS)
	c.Kill()
	require.Eventually(t, func() bool { return c.Starts() == 2 && c.Sample(context.Background()).Up }, 2*time.Minute, 100*time.Millisecond)
	require.NotEmpty(t, c.Exits())
	assert.Equal(t, "killed", c.Exits()[0].Signal)
}

func TestMissingNode(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, spec := range []string{"chp@4.5.6", "chp:."} {
		s, err := ParseSpec(spec)
		require.NoError(t, err)
		_, err = Obtain(context.Background(), s, &Cache{Dir: t.TempDir()})
		assert.ErrorIs(t, err, ErrNoNode, spec)
	}
}

// A range names the newest release in it, as npm resolves it; the cache
// and the report hold the real version.
func TestObtainResolvesRanges(t *testing.T) {
	p := obtain(t, "chp@4.5")
	assert.Equal(t, "4.5.6", p.Version)
	assert.Contains(t, p.Args[0], "chp@4.5.6", "cached under the real version")
	s, err := ParseSpec("chp@9")
	require.NoError(t, err)
	_, err = Obtain(context.Background(), s, &Cache{Dir: t.TempDir()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "npm has no configurable-http-proxy 9")
}

// A candidate that cannot be started again after a crash has one exit
// (the crash) and one failed relaunch on record, however often the
// supervisor tries: more would inflate restarts and the verdict.
func TestFailedRelaunchIsRecordedOnce(t *testing.T) {
	p := obtain(t, "chp@4.5.6")
	// Node behind a link that goes away once the candidate runs.
	link := filepath.Join(t.TempDir(), "node")
	require.NoError(t, os.Symlink(p.Path, link))
	gone := *p
	gone.Path = link
	c := start(t, &gone, Options{RestartDelay: 50 * time.Millisecond})
	require.NoError(t, os.Remove(link))
	c.Kill()
	var exits []Exit
	require.Eventually(t, func() bool {
		exits = c.Exits()
		return len(exits) >= 2
	}, 20*time.Second, 20*time.Millisecond, "the kill and the failed relaunch are recorded")
	time.Sleep(500 * time.Millisecond) // ten more tries
	exits = c.Exits()
	require.Len(t, exits, 2, "%+v", exits)
	assert.Equal(t, "killed", exits[0].Signal)
	assert.Contains(t, exits[1].Cause, "start candidate")
	assert.Equal(t, 1, c.Starts())
}

// A port picked as free and taken before the candidate bound it (by a
// replay's own outgoing connection, say) costs a fresh pick, not the run.
func TestTakenPortIsPickedAgain(t *testing.T) {
	p := obtain(t, "chp@4.5.6")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	picks := 0
	pickPort = func(ip string) (int, error) {
		picks++
		if picks == 1 {
			return taken, nil
		}
		return freePort(ip)
	}
	t.Cleanup(func() { pickPort = freePort })
	c := start(t, p, Options{})
	port, _, _ := c.Ports()
	assert.NotEqual(t, taken, port)
	assert.Greater(t, picks, 3, "the first ports were given up")
	resp, err := http.Get(c.URL() + "/_chp_healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}
