package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A real JupyterHub (Debian's jupyterhub package, 3.0) in front of
// configurable-http-proxy from npm, with notebook servers spawned as local
// processes and a hub-managed service, all on loopback ports of its own.

// HubOptions say how the hub is laid out and what secrets it holds.
type HubOptions struct {
	BaseURL       string // c.JupyterHub.base_url, e.g. "/jhub/"; "" is "/"
	SubdomainHost string // a host name; users are then on NAME.SubdomainHost
	CHPVersion    string // configurable-http-proxy from npm (default 4.5.6)

	ProxyToken   string // CONFIGPROXY_AUTH_TOKEN
	Password     string // every user's password (DummyAuthenticator)
	ServiceName  string // the hub-managed service, which also has an admin token
	ServiceToken string
}

// Hub is a running JupyterHub.
type Hub struct {
	HubOptions
	Port, APIPort, ServicePort int
	dir                        string
	cmd                        *exec.Cmd
	out                        *Buffer
	stopped                    bool
}

// serviceScript answers every request like a careless service would:
// the caller's name in the reason phrase, a cookie name and a header name,
// and whatever it was given back in Location.
const serviceScript = `import sys, json, urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        who = q.get('who', 'nobody')
        wire = who.encode('utf-8').decode('latin-1')
        self.send_response(403, 'Forbidden for ' + wire)
        self.send_header('Set-Cookie', 'notes-view-%s=%s; Path=/' % (urllib.parse.quote(who), q.get('cookie', 'x')))
        self.send_header('Location', q.get('next', '/'))
        self.send_header('X-Owner-' + urllib.parse.quote(who, safe=''), q.get('secret', ''))
        body = json.dumps({'owner': who, 'secret': q.get('secret', '')}).encode()
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
`

// StartHub starts a JupyterHub and waits until its proxy answers. It
// stops when the test ends, if Stop was not called before.
func StartHub(t testing.TB, o HubOptions) *Hub {
	t.Helper()
	hub := Need(t, "jupyterhub")
	Need(t, "jupyterhub-singleuser")
	if o.CHPVersion == "" {
		o.CHPVersion = "4.5.6"
	}
	chp := CHP(t, o.CHPVersion)
	h := &Hub{HubOptions: o, Port: FreePort(t), APIPort: FreePort(t), ServicePort: FreePort(t), dir: t.TempDir(), out: &Buffer{}}
	hubPort := FreePort(t)
	script := filepath.Join(h.dir, "service.py")
	if err := os.WriteFile(script, []byte(serviceScript), 0o600); err != nil {
		t.Fatal(err)
	}
	q := func(s string) string { return fmt.Sprintf("%q", s) } // a Python string literal (ASCII here)
	cfg := []string{
		"c.JupyterHub.ip = '127.0.0.1'",
		fmt.Sprintf("c.JupyterHub.port = %d", h.Port),
		"c.JupyterHub.hub_ip = '127.0.0.1'",
		fmt.Sprintf("c.JupyterHub.hub_port = %d", hubPort),
		fmt.Sprintf("c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:%d'", h.APIPort),
		"c.ConfigurableHTTPProxy.command = [" + q(chp) + "]",
		"c.ConfigurableHTTPProxy.auth_token = " + q(o.ProxyToken),
		"c.ConfigurableHTTPProxy.pid_file = " + q(filepath.Join(h.dir, "proxy.pid")),
		"c.JupyterHub.authenticator_class = 'dummy'",
		"c.DummyAuthenticator.password = " + q(o.Password),
		"c.JupyterHub.spawner_class = 'simple'",
		"c.SimpleLocalProcessSpawner.home_dir_template = " + q(filepath.Join(h.dir, "home", "{username}")),
		"c.Spawner.args = ['--allow-root']",
		"c.Spawner.start_timeout = 60",
		"c.Spawner.http_timeout = 60",
		"c.JupyterHub.allow_named_servers = True",
		"c.JupyterHub.db_url = " + q("sqlite:///"+filepath.Join(h.dir, "jupyterhub.sqlite")),
		"c.JupyterHub.cookie_secret_file = " + q(filepath.Join(h.dir, "cookie_secret")),
		"c.JupyterHub.last_activity_interval = 5",
		fmt.Sprintf("c.JupyterHub.services = [{'name': %s, 'url': 'http://127.0.0.1:%d', 'api_token': %s, 'command': ['/usr/bin/python3', %s, '%d']}]",
			q(o.ServiceName), h.ServicePort, q(o.ServiceToken), q(script), h.ServicePort),
		"c.JupyterHub.load_roles = [{'name': 'driver', 'scopes': ['admin:users', 'admin:servers', 'tokens', 'list:users', 'read:users', 'access:servers'], 'services': [" + q(o.ServiceName) + "]}]",
	}
	if o.BaseURL != "" {
		cfg = append(cfg, "c.JupyterHub.base_url = "+q(o.BaseURL))
	}
	if o.SubdomainHost != "" {
		cfg = append(cfg, fmt.Sprintf("c.JupyterHub.subdomain_host = 'http://%s:%d'", o.SubdomainHost, h.Port))
	}
	path := filepath.Join(h.dir, "jupyterhub_config.py")
	if err := os.WriteFile(path, []byte(strings.Join(cfg, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(hub, "-f", path)
	h.cmd.Dir = h.dir
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the proxy and the servers die with it
	w := writerFunc(func(p []byte) (int, error) { h.out.write(string(p)); return len(p), nil })
	h.cmd.Stdout, h.cmd.Stderr = w, w
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start jupyterhub: %v", err)
	}
	t.Cleanup(func() {
		h.Stop(t)
		if t.Failed() {
			t.Logf("jupyterhub's log:\n%s", h.out.String())
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%shub/api/", h.Port, h.Base()))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		if time.Now().After(deadline) || h.cmd.ProcessState != nil {
			t.Fatalf("jupyterhub did not answer through its proxy on port %d within 90 s (%v):\n%s", h.Port, err, h.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Base is the base URL, "/" by default.
func (h *Hub) Base() string {
	if h.BaseURL == "" {
		return "/"
	}
	return h.BaseURL
}

// Host is the hub's host as clients name it (with its port).
func (h *Hub) Host() string {
	if h.SubdomainHost != "" {
		return fmt.Sprintf("%s:%d", h.SubdomainHost, h.Port)
	}
	return fmt.Sprintf("127.0.0.1:%d", h.Port)
}

// Log is what the hub, its proxy and the servers printed so far.
func (h *Hub) Log() string { return h.out.String() }

// Stop stops the hub as an operator would (SIGTERM: it stops the servers,
// removes their routes and stops the proxy), then anything left over.
func (h *Hub) Stop(t testing.TB) {
	if h.stopped {
		return
	}
	h.stopped = true
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Logf("jupyterhub did not stop within 30 s of SIGTERM; killing it")
	}
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	<-done
}
