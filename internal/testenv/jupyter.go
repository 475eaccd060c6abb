package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"
)

// A small JupyterHub look-alike and a client that drives it: real sockets
// on loopback, recorded by tcpdump, so that a capture can be checked
// against what the client really sent and got. The client works the same
// against a proxy in front of the server.

// WireSecrets are secrets the client sends, which an anonymized trace must not hold.
var WireSecrets = []string{
	"9f1c2e3d4b5a69788796a5b4c3d2e1f0", // API token
	"2|1:0|10:1764000000|20:jupyterhub-hub-login|8:YWxpY2U=|" + strings.Repeat("ab12", 16), // hub-login cookie
	"5e4d3c2b1a09f8e7d6c5b4a392817061",                       // session id
	"2|6b1c2f3a|9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a|1764000000", // _xsrf
	"hunter2-is-not-a-password",                              // form password
	"print(open('/home/jovyan/exam-answers.txt').read())",    // code
	"exam-answers-final",                                     // a file name
	"marie.curie",                                            // the user name
}

// User is the user the client plays.
const User = "marie.curie"

// HubServer answers like a hub and a user server: pages and JSON of the
// size the query asks for, chunked streams, a login, and kernel channels
// WebSockets that answer every message with a status and a reply.
func HubServer() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hub/login", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.SetCookie(w, &http.Cookie{Name: "jupyterhub-hub-login", Value: url.QueryEscape(WireSecrets[1]), Path: "/hub/", HttpOnly: true})
		http.Redirect(w, r, "/user/"+User+"/lab", http.StatusFound)
	})
	mux.HandleFunc("/user/{name}/api/kernels/{id}/channels", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			msg, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				return // a close frame was answered by wsutil, or the peer vanished
			}
			_ = wsutil.WriteServerMessage(conn, ws.OpText, []byte(`{"header":{"msg_type":"status"},"parent_header":{},"content":{"execution_state":"busy"},"channel":"iopub"}`))
			_ = wsutil.WriteServerMessage(conn, op, bytes.Repeat([]byte{'r'}, len(msg)*2))
		}
	})
	mux.HandleFunc("/user/{name}/stream", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("size"))
		for sent := 0; sent < n; sent += 4096 {
			if _, err := w.Write(bytes.Repeat([]byte{'s'}, min(4096, n-sent))); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.Contains(r.URL.Path, "missing") {
			http.Error(w, `{"message":"not found"}`, http.StatusNotFound)
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("size"))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(bytes.Repeat([]byte{'j'}, n))
	})
	return mux
}

// Serve runs HubServer on a free loopback port and returns its address and port.
func Serve(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: HubServer(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String(), l.Addr().(*net.TCPAddr).Port
}

// Exchange is one request the client made and what came back.
type Exchange struct {
	Method, Target string
	Status         int
	Size           int64 // response body bytes
	Incomplete     bool  // the client reset the connection mid-response
}

// Frame is one WebSocket frame as the client knows it.
type Frame struct {
	Dir string // c2s or s2c
	Op  ws.OpCode
	Len int64
}

// Workload is what the client did.
type Workload struct {
	Exchanges []Exchange
	Frames    []Frame
	Start     time.Time
	End       time.Time
}

// Drive sends a JupyterHub-like mix to addr: keep-alive requests with
// secrets in cookies, headers and queries, a login form, HEAD, a 404,
// Expect: 100-continue, three pipelined requests, a kernel WebSocket with
// fragmented and control frames, and a client that resets the connection
// in the middle of a response.
//
// pipeline false leaves out the pipelined requests: configurable-http-proxy
// answers only the first of them and closes the connection (browsers do not
// pipeline, so JupyterHub never meets this).
func Drive(t *testing.T, addr string, pipeline bool) *Workload {
	t.Helper()
	w := &Workload{Start: time.Now()}
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	do := func(method, target, body string, hdr map[string]string) {
		req, err := http.NewRequest(method, base+target, strings.NewReader(body))
		require.NoError(t, err)
		if body == "" {
			req.Body = nil
		}
		req.Header.Set("Cookie", "jupyterhub-session-id="+WireSecrets[2]+"; _xsrf="+url.QueryEscape(WireSecrets[3])+"; jupyterhub-user-"+User+"="+url.QueryEscape(WireSecrets[1]))
		req.Header.Set("Authorization", "token "+WireSecrets[0])
		req.Header.Set("X-Forwarded-For", "131.152.77.201")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		n, err := io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		w.Exchanges = append(w.Exchanges, Exchange{Method: method, Target: target, Status: resp.StatusCode, Size: n})
	}
	do("POST", "/hub/login?next=%2Fuser%2F"+User+"%2Flab", "username="+User+"&password="+WireSecrets[4], map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	for i, size := range []int{0, 17, 1500, 70000, 3} {
		do("GET", fmt.Sprintf("/user/%s/api/contents/%s-%d.ipynb?content=1&size=%d&token=%s", User, WireSecrets[6], i, size, WireSecrets[0]), "", nil)
	}
	do("HEAD", "/user/"+User+"/api/contents?size=99", "", nil)
	do("GET", "/user/"+User+"/api/missing", "", nil)
	do("GET", "/user/"+User+"/stream?size=200000", "", nil)
	do("PUT", "/user/"+User+"/api/contents/"+WireSecrets[6]+".ipynb?size=5", strings.Repeat(`{"source":"`+WireSecrets[5]+`"}`, 50), map[string]string{"Expect": "100-continue"})

	if pipeline {
		pipelined(t, w, addr)
	}

	// A kernel channels WebSocket.
	target := "/user/" + User + "/api/kernels/5c8e76c7-9f0e-4d43-8b1e-2a5b6c7d8e9f/channels?session_id=" + WireSecrets[2]
	conn, _, _, err := ws.Dial(context.Background(), "ws://"+addr+target)
	require.NoError(t, err)
	w.Exchanges = append(w.Exchanges, Exchange{Method: "GET", Target: target, Status: 101})
	sendFrame := func(f ws.Frame) {
		w.Frames = append(w.Frames, Frame{"c2s", f.Header.OpCode, f.Header.Length})
		require.NoError(t, ws.WriteFrame(conn, ws.MaskFrame(f)))
	}
	expectReplies := func() {
		for range 2 {
			h, err := ws.ReadHeader(conn)
			require.NoError(t, err)
			_, err = io.CopyN(io.Discard, conn, h.Length)
			require.NoError(t, err)
			w.Frames = append(w.Frames, Frame{"s2c", h.OpCode, h.Length})
		}
	}
	for i := range 5 {
		msg := fmt.Sprintf(`{"header":{"msg_id":"m%d","msg_type":"execute_request","username":%q,"session":%q},"parent_header":{},"metadata":{},"content":{"code":%q},"channel":"shell"}`,
			i, User, WireSecrets[2], WireSecrets[5])
		sendFrame(ws.NewTextFrame([]byte(msg)))
		expectReplies()
	}
	// A fragmented binary message, a ping between its fragments.
	sendFrame(ws.NewFrame(ws.OpBinary, false, bytes.Repeat([]byte{1}, 3000)))
	sendFrame(ws.NewPingFrame([]byte("ping")))
	h, err := ws.ReadHeader(conn) // the pong
	require.NoError(t, err)
	_, _ = io.CopyN(io.Discard, conn, h.Length)
	w.Frames = append(w.Frames, Frame{"s2c", h.OpCode, h.Length})
	sendFrame(ws.NewFrame(ws.OpContinuation, true, bytes.Repeat([]byte{2}, 100)))
	expectReplies()
	sendFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	h, err = ws.ReadHeader(conn) // the server's close
	require.NoError(t, err)
	_, _ = io.CopyN(io.Discard, conn, h.Length) // unread bytes would turn the close into a reset
	w.Frames = append(w.Frames, Frame{"s2c", h.OpCode, h.Length})
	conn.Close()

	// A reader that vanishes mid-response: the EPIPE case.
	rst, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	big := "/user/" + User + "/stream?size=3000000"
	fmt.Fprintf(rst, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", big, addr)
	_, err = io.ReadFull(rst, make([]byte, 50000))
	require.NoError(t, err)
	require.NoError(t, rst.(*net.TCPConn).SetLinger(0))
	rst.Close()
	w.Exchanges = append(w.Exchanges, Exchange{Method: "GET", Target: big, Status: 200, Incomplete: true})
	time.Sleep(100 * time.Millisecond) // let the server see the reset
	w.End = time.Now()
	return w
}

// pipelined sends three requests in one write and reads the answers in order.
func pipelined(t *testing.T, w *Workload, addr string) {
	t.Helper()
	pipe, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	var reqs bytes.Buffer
	for i, size := range []int{10, 20000, 30} {
		target := fmt.Sprintf("/user/%s/api/kernelspecs?size=%d&i=%d", User, size, i)
		fmt.Fprintf(&reqs, "GET %s HTTP/1.1\r\nHost: %s\r\nCookie: jupyterhub-session-id=%s\r\n\r\n", target, addr, WireSecrets[2])
		w.Exchanges = append(w.Exchanges, Exchange{Method: "GET", Target: target, Status: 200, Size: int64(size)})
	}
	_, err = pipe.Write(reqs.Bytes())
	require.NoError(t, err)
	br := bufio.NewReader(pipe)
	for range 3 {
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	pipe.Close()
}
