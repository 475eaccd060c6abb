package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/internal/testenv"
)

// streamer is a user's server that keeps talking: a 512 KiB download sent
// 16 KiB every 2 ms, and a kernel WebSocket that sends 2 KiB every 5 ms
// once the client has spoken, until its peer goes (or 20 s).
func streamer(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	chunk := bytes.Repeat([]byte("x"), 16<<10)
	mux.HandleFunc("/user/"+testenv.User+"/files/data.bin", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(32*len(chunk)))
		rc := http.NewResponseController(w)
		for range 32 {
			if _, err := w.Write(chunk); err != nil || rc.Flush() != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	msg := bytes.Repeat([]byte("y"), 2<<10)
	mux.HandleFunc("/user/"+testenv.User+"/api/kernels/k/channels", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := wsutil.ReadClientText(conn); err != nil {
			return
		}
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if err := wsutil.WriteServerText(conn, msg); err != nil {
				return
			}
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// vanish plays students whose laptops vanish mid-answer, n of them, 10 at
// a time: odd ones open a kernel WebSocket, send a message, read a frame
// and reset the connection (no close frame); even ones start the download
// and reset after its first 16 KiB.
func vanish(t *testing.T, public string, n int) {
	t.Helper()
	reset := func(c net.Conn) {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if i%2 == 1 {
				conn, _, _, err := ws.Dial(ctx, "ws://"+public+"/user/"+testenv.User+"/api/kernels/k/channels")
				if err != nil {
					errs <- fmt.Errorf("websocket %d: %w", i, err)
					return
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				err = wsutil.WriteClientText(conn, []byte(`{"header":{"msg_type":"execute_request"}}`))
				if err == nil {
					_, err = wsutil.ReadServerText(conn)
				}
				reset(conn)
				if err != nil {
					errs <- fmt.Errorf("websocket %d: %w", i, err)
				}
				return
			}
			conn, err := net.DialTimeout("tcp", public, 5*time.Second)
			if err != nil {
				errs <- fmt.Errorf("download %d: %w", i, err)
				return
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "GET /user/%s/files/data.bin HTTP/1.1\r\nHost: %s\r\n\r\n", testenv.User, public)
			_, err = io.CopyN(io.Discard, conn, 16<<10)
			reset(conn)
			if err != nil {
				errs <- fmt.Errorf("download %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The incident's question, end to end on real parts: students' laptops
// vanish mid-download and mid-stream behind a real CHP, tcpdump records
// it, capture makes a trace, and compare tells the proxy that leaks
// (4.5.6, http-proxy 1.18) from the fork that fixed it (4.6.2), both ways.
func TestIncidentLeakIsCaught(t *testing.T) {
	testenv.Need(t, "tcpdump")
	chp := testenv.CHP(t, "4.6.2")
	backend := streamer(t)
	public, api := testenv.FreePort(t), testenv.FreePort(t)
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	token := hex.EncodeToString(secret)
	testenv.Start(t, "node", []string{"CONFIGPROXY_AUTH_TOKEN=" + token}, chp,
		"--ip", "127.0.0.1", "--port", strconv.Itoa(public), "--api-ip", "127.0.0.1", "--api-port", strconv.Itoa(api),
		"--default-target", "http://"+backend, "--log-level", "warn")
	testenv.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", api), 20*time.Second)
	testenv.WaitListening(t, fmt.Sprintf("127.0.0.1:%d", public), 20*time.Second)

	dir := t.TempDir()
	dump := testenv.Tcpdump(t, filepath.Join(dir, "vanish.pcap"), fmt.Sprintf("tcp port %d or tcp port %d", public, api))
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/api/routes/user/%s", api, testenv.User),
		strings.NewReader(fmt.Sprintf(`{"target":"http://%s","user":%q,"server_name":""}`, backend, testenv.User)))
	req.Header.Set("Authorization", "token "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	vanish(t, fmt.Sprintf("127.0.0.1:%d", public), 60)
	time.Sleep(500 * time.Millisecond)
	dump.Stop(t)

	tr := filepath.Join(dir, "vanish.trace")
	r := hubreplay(t, nil, "capture", "--pcap", dump.Path, "--port", strconv.Itoa(public), "--api-port", strconv.Itoa(api), "-o", tr)
	require.Equal(t, 0, r.code, r.stderr)

	compare := func(a, b string) (result, string) {
		out := filepath.Join(dir, fmt.Sprintf("%s-vs-%s", a, b))
		r := hubreplay(t, nil, "compare", "--trace", tr, "--a", a, "--b", b, "--speed", "1", "-o", out)
		md, err := os.ReadFile(filepath.Join(out, "report.md"))
		require.NoError(t, err, r.stderr)
		return r, string(md)
	}
	r, md := compare("chp@4.6.2", "chp@4.5.6")
	assert.Equal(t, 1, r.code, r.stderr)
	// Under make test's load the run may also be saturated: latency and
	// the like are then left out, and the leak, which saturation does not
	// touch, still makes the regression ("SATURATED: … — REGRESSION: …").
	assert.Regexp(t, `(?m)^(SATURATED: .* — )?REGRESSION: chp@4.5.6 is worse than chp@4.6.2 — .*a socket leak: it left \d+ sockets open after the run and idle \(\d+ per 1,000 vanished clients, of 60\)`, r.stderr)
	t.Logf("4.6.2 → 4.5.6:\n%s", md)

	r, md = compare("chp@4.5.6", "chp@4.6.2")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stderr, "REGRESSION")
	t.Logf("4.5.6 → 4.6.2:\n%s", md)

	// 5.3.0's figures, reported whatever they are (it holds sockets in no
	// TCP state and logs a reset per vanished client, on the run).
	r, md = compare("chp@4.6.2", "chp@5.3.0")
	assert.LessOrEqual(t, r.code, 1, r.stderr)
	t.Logf("4.6.2 → 5.3.0 (exit %d):\n%s", r.code, md)
}
