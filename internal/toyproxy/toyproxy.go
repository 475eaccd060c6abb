// Package toyproxy is a small proxy with configurable-http-proxy's outside
// (its flags, the routes REST API, the token in CONFIGPROXY_AUTH_TOKEN)
// and faults to order. Tests run it as a cmd: candidate that is broken on
// purpose, to show that a comparison fails where it must — and, without
// faults, passes where it must.
package toyproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Faults are what the proxy does wrong.
type Faults struct {
	// Fail503 is the share of proxied requests it answers with its own 503
	// (evenly spread: with 0.05, one in twenty).
	Fail503 float64
	// LeakWS keeps the client's side of every WebSocket open after the
	// session ended: one socket left in CLOSE_WAIT per session, as the
	// leaking CHP versions did.
	LeakWS bool
	// ExitAfter makes the process exit (status 1, as a crash) on the
	// ExitAfter-th proxied request; restarted, it starts with no routes,
	// as CHP does.
	ExitAfter int64
	// Delay holds every proxied request this long before passing it on.
	Delay time.Duration
	// LeakBytes keeps this much memory (touched, so resident) per proxied
	// request, never freed: a heap leak.
	LeakBytes int
	// HangAfter freezes the proxy from its HangAfter-th proxied request
	// on, as a Node process whose event loop is stuck: the process lives
	// and its ports accept connections, but no request, health check or
	// API call is answered any more.
	HangAfter int64
	// APIDelay holds every route change (POST, DELETE on the routes API)
	// this long before it is made and answered: a proxy slow to confirm
	// the hub's adds.
	APIDelay time.Duration
}

// Proxy routes requests by longest path prefix, like CHP.
type Proxy struct {
	Default string // the default target (the hub)
	Token   string
	Faults  Faults

	mu     sync.Mutex
	routes map[string]map[string]any // path prefix → route data, "target" included
	n      int64                     // proxied requests, for Fail503
	hung   chan struct{}             // closed when HangAfter is reached
	once   sync.Once
	leaked []net.Conn
	heap   [][]byte
}

// Public is the handler for the proxy's public port.
func (p *Proxy) Public() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.hang(r) {
			return
		}
		if r.URL.Path == "/_chp_healthz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		target := p.target(r.URL.Path)
		if target == nil {
			http.Error(w, "no route", http.StatusNotFound)
			return
		}
		if p.count() {
			http.Error(w, "toyproxy: 503 on purpose", http.StatusServiceUnavailable)
			return
		}
		if p.hang(r) {
			return
		}
		if p.Faults.Delay > 0 {
			time.Sleep(p.Faults.Delay)
		}
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			p.tunnel(w, r, target)
			return
		}
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
			// A target it cannot reach is a 503, as CHP answers it.
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				slog.Warn("toyproxy: target unreachable", "err", err)
				w.WriteHeader(http.StatusServiceUnavailable)
			}}
		rp.ServeHTTP(w, r)
	})
}

// count counts a proxied request and says whether to fail it.
func (p *Proxy) count() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if n := p.Faults.LeakBytes; n > 0 {
		b := make([]byte, n)
		for i := 0; i < n; i += 512 {
			b[i] = 1
		}
		p.heap = append(p.heap, b)
	}
	if p.Faults.HangAfter > 0 && p.n == p.Faults.HangAfter {
		slog.Error("toyproxy: hanging on purpose", "requests", p.n)
		p.once.Do(p.init)
		close(p.hung)
	}
	if p.n == p.Faults.ExitAfter {
		slog.Error("toyproxy: exiting on purpose", "requests", p.n)
		os.Exit(1)
	}
	return int64(float64(p.n)*p.Faults.Fail503) != int64(float64(p.n-1)*p.Faults.Fail503)
}

func (p *Proxy) target(path string) *url.URL {
	p.mu.Lock()
	defer p.mu.Unlock()
	best, target := -1, p.Default
	for prefix, data := range p.routes {
		pre := strings.TrimSuffix(prefix, "/")
		if (path == pre || strings.HasPrefix(path, pre+"/")) && len(pre) > best {
			best, target = len(pre), fmt.Sprint(data["target"])
		}
	}
	u, err := url.Parse(target)
	if err != nil || target == "" {
		return nil
	}
	return u
}

// tunnel passes a WebSocket upgrade through to the target, then copies
// bytes both ways until either side ends.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request, target *url.URL) {
	back, err := net.DialTimeout("tcp", target.Host, 5*time.Second)
	if err != nil {
		http.Error(w, "toyproxy: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	client, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		back.Close()
		return
	}
	if err := r.Write(back); err != nil {
		back.Close()
		client.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(back, rw); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, bufio.NewReader(back)); done <- struct{}{} }()
	<-done
	back.Close()
	if p.Faults.LeakWS {
		p.mu.Lock()
		p.leaked = append(p.leaked, client)
		p.mu.Unlock()
		return
	}
	client.Close()
}

func (p *Proxy) init() { p.hung = make(chan struct{}) }

// hang holds the request without an answer until its client gives up, once
// the proxy hangs; it reports whether it did.
func (p *Proxy) hang(r *http.Request) bool {
	p.once.Do(p.init)
	select {
	case <-p.hung:
		<-r.Context().Done()
		return true
	default:
		return false
	}
}

// API is the handler for the routes REST API.
func (p *Proxy) API() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.hang(r) {
			return
		}
		if r.Header.Get("Authorization") != "token "+p.Token {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		path, ok := strings.CutPrefix(r.URL.Path, "/api/routes")
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && p.Faults.APIDelay > 0 {
			time.Sleep(p.Faults.APIDelay)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(p.routes)
		case http.MethodPost:
			data := map[string]any{}
			if err := json.NewDecoder(r.Body).Decode(&data); err != nil || data["target"] == nil {
				http.Error(w, "a route needs a target", http.StatusBadRequest)
				return
			}
			p.routes[path] = data
			w.WriteHeader(http.StatusCreated)
		case http.MethodDelete:
			delete(p.routes, path)
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}

// Main runs the proxy with CHP's flags (those JupyterHub passes) and the
// faults', until SIGTERM or SIGINT; it returns the exit status.
func Main(args []string) int {
	fs := flag.NewFlagSet("toyproxy", flag.ContinueOnError)
	ip := fs.String("ip", "127.0.0.1", "public IP")
	port := fs.Int("port", 8000, "public port")
	apiIP := fs.String("api-ip", "127.0.0.1", "API IP")
	apiPort := fs.Int("api-port", 8001, "API port")
	def := fs.String("default-target", "", "default target")
	fs.String("error-target", "", "ignored")
	fs.String("log-level", "info", "ignored")
	p := &Proxy{Token: os.Getenv("CONFIGPROXY_AUTH_TOKEN"), routes: map[string]map[string]any{}}
	fs.Float64Var(&p.Faults.Fail503, "fail-503", 0, "share of requests answered 503")
	fs.BoolVar(&p.Faults.LeakWS, "leak-ws", false, "leave every WebSocket's client socket open")
	fs.Int64Var(&p.Faults.ExitAfter, "exit-after", 0, "exit (status 1) on this proxied request")
	fs.DurationVar(&p.Faults.Delay, "delay", 0, "hold every proxied request this long")
	fs.IntVar(&p.Faults.LeakBytes, "leak-bytes", 0, "keep this many bytes per proxied request, never freed")
	fs.Int64Var(&p.Faults.HangAfter, "hang-after", 0, "stop answering anything from this proxied request on")
	fs.DurationVar(&p.Faults.APIDelay, "api-delay", 0, "hold every route change this long before making and answering it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	p.Default = *def
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Both ports listen before either serves: whoever waits for the public
	// port may use the API at once.
	errs := make(chan error, 2)
	for _, s := range []struct {
		addr string
		h    http.Handler
	}{{net.JoinHostPort(*ip, fmt.Sprint(*port)), p.Public()}, {net.JoinHostPort(*apiIP, fmt.Sprint(*apiPort)), p.API()}} {
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			slog.Error("toyproxy", "err", err)
			return 1
		}
		// Node's keep-alive timeout, as CHP has it.
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Second}
		defer srv.Close()
		go func() { errs <- srv.Serve(l) }()
	}
	slog.Info("toyproxy listening", "port", *port, "api_port", *apiPort, "faults", fmt.Sprintf("%+v", p.Faults))
	select {
	case <-ctx.Done():
	case err := <-errs:
		if !errors.Is(err, http.ErrServerClosed) {
			slog.Error("toyproxy", "err", err)
			return 1
		}
	}
	return 0
}

// Build compiles the toy proxy into dir (without the race detector, so
// that its memory and timing are a plain Go program's) and returns the
// binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "toyproxy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/hubreplay/hubreplay/internal/toyproxy/cmd/toyproxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build toyproxy: %w: %s", err, out)
	}
	return bin, nil
}

// Spec is a cmd: candidate that runs the toy proxy binary with the given
// fault flags (e.g. "--fail-503", "0.05").
func Spec(bin string, faults ...string) string {
	return fmt.Sprintf("cmd:exec %s --port {port} --api-port {api_port} --default-target {default_target} %s", bin, strings.Join(faults, " "))
}
