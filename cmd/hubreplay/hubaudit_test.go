package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
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
	"github.com/hubreplay/hubreplay/trace"
)

// The anonymization audit on a real JupyterHub, as a security tester
// would run it: Debian's JupyterHub 3.0 with configurable-http-proxy from
// npm, notebook servers, a named server and a hub-managed service, driven
// by clients that put fresh random secrets in every place JupyterHub and
// its users put them, recorded with tcpdump on loopback. Once for each
// layout: base URL "/", a base URL prefix, users on subdomains. Captured
// raw, verify finds every secret (so the audit can fail); captured as an
// operator would, with nothing said about the layout, it finds none, and
// every user has one pseudonym. README's threat model lists the places.

// hubSecrets are one run's secrets.
type hubSecrets struct {
	mu   sync.Mutex
	list []string          // every one, for verify --secrets
	kind map[string]string // secret → where it was put
}

func (s *hubSecrets) add(kind, v string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.kind[v]; !ok && v != "" {
		s.list = append(s.list, v)
		s.kind[v] = kind
	}
	return v
}

// word is a pronounceable random word, like a name nobody has.
func word(n int) string {
	const cons, vow = "bcdfghjklmnprstvz", "aeiou"
	var b strings.Builder
	for i := range n {
		set := cons
		if i%2 == 1 {
			set = vow
		}
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
		b.WriteByte(set[k.Int64()])
	}
	return b.String()
}

func digits(n int) string {
	k, _ := rand.Int(rand.Reader, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil))
	return fmt.Sprintf("%0*d", n, k)
}

// pyQuote is Python's urllib.parse.quote with the given safe characters.
func pyQuote(s, safe string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.-~", c) >= 0 || strings.IndexByte(safe, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// hubUser is one user, as typed at the login form and as JupyterHub keeps it.
type hubUser struct{ typed, name string }

func (u hubUser) escaped() string { return pyQuote(u.name, "@~") } // JupyterHub's url_escape_path

// label is the user's subdomain label: quote(name).replace('%', '_').lower().
func (u hubUser) label() string {
	return strings.ToLower(strings.ReplaceAll(pyQuote(u.name, "/"), "%", "_"))
}

// hubDriver plays the users and the admin tooling of one hub.
type hubDriver struct {
	t        *testing.T
	hub      *testenv.Hub
	s        *hubSecrets
	kernelMu sync.Mutex
}

// hubURL is a URL on the hub's own host.
func (d *hubDriver) hubURL(path string) string {
	return "http://" + d.hub.Host() + d.hub.Base() + path
}

// userURL is a URL of the user's (default or named) server.
func (d *hubDriver) userURL(u hubUser, server, path string) string {
	host := d.hub.Host()
	if d.hub.SubdomainHost != "" {
		host = fmt.Sprintf("%s.%s:%d", u.label(), d.hub.SubdomainHost, d.hub.Port)
	}
	p := d.hub.Base() + "user/" + u.escaped() + "/"
	if server != "" {
		p += pyQuote(server, "") + "/"
	}
	return "http://" + host + p + path
}

// dial reaches every host name at the hub's proxy on loopback.
func (d *hubDriver) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var nd net.Dialer
	return nd.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", d.hub.Port))
}

// recorder keeps every cookie value and OAuth code or state the hub sends:
// they are secrets too.
type recorder struct {
	d    *hubDriver
	next http.RoundTripper
}

func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	for _, c := range resp.Cookies() {
		if len(c.Value) >= 8 {
			r.d.s.add("cookie value "+c.Name, c.Value)
		}
	}
	if loc, err := url.Parse(resp.Header.Get("Location")); err == nil {
		for _, k := range []string{"code", "state"} {
			if v := loc.Query().Get(k); len(v) >= 8 {
				r.d.s.add("oauth "+k, v)
			}
		}
	}
	return resp, nil
}

// escapedJar matches cookie paths against the escaped request path, as
// browsers do; Go's jar compares them with the decoded one, and so loses
// the cookies of a user whose name needs escaping.
type escapedJar struct{ *cookiejar.Jar }

func escapedPath(u *url.URL) *url.URL {
	c := *u
	c.Path, c.RawPath = u.EscapedPath(), ""
	return &c
}

func (j escapedJar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	j.Jar.SetCookies(escapedPath(u), cookies)
}

func (j escapedJar) Cookies(u *url.URL) []*http.Cookie { return j.Jar.Cookies(escapedPath(u)) }

func (d *hubDriver) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: escapedJar{jar}, Timeout: 60 * time.Second,
		Transport: recorder{d, &http.Transport{DialContext: d.dial, DisableCompression: true}}}
}

// do sends a request and returns the answer's status and body.
func (d *hubDriver) do(c *http.Client, method, u, body string, hdr ...string) (int, string) {
	d.t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(d.t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(d.t, err, "%s %s", method, u)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// admin calls the hub's API with the service's token.
func (d *hubDriver) admin(method, path, body string) (int, string) {
	return d.do(&http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: d.dial}}, method, d.hubURL("hub/api/"+path), body,
		"Authorization", "token "+d.hub.ServiceToken)
}

// startServer spawns a user's server through the API and waits until it is ready.
func (d *hubDriver) startServer(u hubUser, server string) {
	d.t.Helper()
	p := "users/" + u.escaped() + "/server"
	if server != "" {
		p = "users/" + u.escaped() + "/servers/" + pyQuote(server, "")
	}
	code, body := d.admin("POST", p, "")
	require.Contains(d.t, []int{201, 202}, code, "spawn %s %q: %s", u.name, server, body)
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, body := d.admin("GET", "users/"+u.escaped(), "")
		var info struct {
			Servers map[string]struct{ Ready bool } `json:"servers"`
		}
		_ = json.Unmarshal([]byte(body), &info)
		if info.Servers[server].Ready {
			return
		}
		require.True(d.t, time.Now().Before(deadline), "server %q of %s not ready in 90 s:\n%s", server, u.name, d.hub.Log())
		time.Sleep(300 * time.Millisecond)
	}
}

func cookieOf(c *http.Client, u, name string) string {
	pu, _ := url.Parse(u)
	for _, k := range c.Jar.Cookies(pu) {
		if k.Name == name {
			return k.Value
		}
	}
	return ""
}

func cookieHeader(c *http.Client, u string) string {
	pu, _ := url.Parse(u)
	var parts []string
	for _, k := range c.Jar.Cookies(pu) {
		parts = append(parts, k.Name+"="+k.Value)
	}
	return strings.Join(parts, "; ")
}

// session is one user's browser and tools: login, their server, files,
// a kernel, a terminal, a named server, the service.
func (d *hubDriver) session(u hubUser, named string, terminal bool) {
	t := d.t
	s := d.s
	c := d.client()
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 15 {
			return http.ErrUseLastResponse
		}
		return nil
	}
	d.do(c, "GET", d.hubURL("hub/login"), "")
	form := url.Values{"username": {u.typed}, "password": {d.hub.Password}}
	if x := cookieOf(c, d.hubURL("hub/"), "_xsrf"); x != "" {
		form.Set("_xsrf", x)
	}
	code, _ := d.do(c, "POST", d.hubURL("hub/login?next="+url.QueryEscape(d.hub.Base()+"hub/home")), form.Encode(),
		"Content-Type", "application/x-www-form-urlencoded")
	require.Equal(t, 200, code, "login as %q", u.typed)

	d.startServer(u, "")
	// The user's browser on their server: OAuth with the hub, then the tree.
	code, _ = d.do(c, "GET", d.userURL(u, "", "tree"), "", "Referer", d.hubURL("hub/home"))
	require.Equal(t, 200, code, "tree of %s", u.name)
	xsrf := cookieOf(c, d.userURL(u, "", ""), "_xsrf")
	require.NotEmpty(t, xsrf, "the notebook server's _xsrf cookie for %s", u.name)

	// A folder and a file with secret names and content.
	folder := s.add("folder name", word(6)+"_"+word(6))
	file := s.add("file name", word(7)+"."+word(8))
	csv := s.add("file name", word(6)+"_"+word(6)+".csv")
	content := s.add("file content", "grade="+word(10))
	code, body := d.do(c, "PUT", d.userURL(u, "", "api/contents/"+folder), `{"type":"directory"}`, "X-XSRFToken", xsrf, "Content-Type", "application/json")
	require.Contains(t, []int{200, 201}, code, body)
	for _, f := range []string{file, csv} {
		code, body = d.do(c, "PUT", d.userURL(u, "", "api/contents/"+folder+"/"+f), `{"type":"file","format":"text","content":"`+content+`"}`,
			"X-XSRFToken", xsrf, "Content-Type", "application/json")
		require.Contains(t, []int{200, 201}, code, body)
		d.do(c, "GET", d.userURL(u, "", "files/"+folder+"/"+f), "", "Referer", d.userURL(u, "", "tree/"+folder))
	}
	// A query key nobody knows, without "=".
	d.do(c, "GET", d.userURL(u, "", "tree/"+folder+"?"+s.add("query key", word(4)+digits(6)+word(6))), "")
	// A viewer link that holds a whole URL, as some extensions build them.
	d.do(c, "GET", d.hubURL("hub/static/viewer.html/file="+d.userURL(u, "", "files/"+folder+"/"+csv)+"&owner="+u.escaped()), "")

	// A kernel, its code and output with secrets, the user in its messages.
	d.kernel(c, u, xsrf, fmt.Sprintf("print(%q)", s.add("kernel code", "KEY_"+word(12))))

	if terminal {
		code, body = d.do(c, "POST", d.userURL(u, "", "api/terminals"), "", "X-XSRFToken", xsrf)
		require.Equal(t, 200, code, body)
		var term struct{ Name string }
		require.NoError(t, json.Unmarshal([]byte(body), &term))
		d.terminal(c, u, term.Name, s.add("terminal keystrokes", "tok_"+word(12)))
	}

	if named != "" {
		d.startServer(u, named)
		code, _ = d.do(c, "GET", d.userURL(u, named, "tree"), "")
		require.Equal(t, 200, code, "named server %q of %s", named, u.name)
		d.do(c, "GET", d.userURL(u, named, "api/contents/"+folder), "")
	}

	// The hub-managed service, which answers carelessly.
	svc := d.hubURL("services/" + d.hub.ServiceName + "/report")
	if d.hub.SubdomainHost != "" {
		svc = fmt.Sprintf("http://%s.%s:%d%sservices/%s/report", d.hub.ServiceName, d.hub.SubdomainHost, d.hub.Port, d.hub.Base(), d.hub.ServiceName)
	}
	q := url.Values{"who": {u.name}, "secret": {s.add("service reply", word(12))}, "cookie": {s.add("service cookie", word(12))},
		"next": {d.userURL(u, "", "files/"+folder+"/"+file)}}
	scheme := s.add("authorization scheme", word(4)+digits(4)+word(6))
	d.do(c, "GET", svc+"?"+q.Encode(), "",
		"X-"+pyQuote(u.name, "")+"-Note", s.add("custom header value", word(10)),
		"Authorization", scheme+" "+s.add("authorization credentials", word(12)),
		"Cookie", "notes-view-"+u.name+"=1",
		"Referer", d.userURL(u, "", "tree/"+folder))
}

// origin is the Origin a browser on the user's server sends.
func (d *hubDriver) origin(u hubUser) string {
	pu, _ := url.Parse(d.userURL(u, "", ""))
	return "http://" + pu.Host
}

// websocket opens a WebSocket on the user's server as their browser
// would, with their cookies and Origin.
func (d *hubDriver) websocket(c *http.Client, u hubUser, path string, protocols ...string) (net.Conn, error) {
	dialer := ws.Dialer{NetDial: d.dial, Timeout: 30 * time.Second, Protocols: protocols,
		Header: ws.HandshakeHeaderHTTP(http.Header{"Cookie": {cookieHeader(c, d.userURL(u, "", ""))}, "Origin": {d.origin(u)}})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, _, err := dialer.Dial(ctx, strings.Replace(d.userURL(u, "", path), "http://", "ws://", 1))
	if err != nil {
		return nil, fmt.Errorf("WebSocket %s of %s: %w", path, u.name, err)
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	return conn, nil
}

// kernel runs code on a kernel over its channels WebSocket and waits for
// the reply.
func (d *hubDriver) kernel(c *http.Client, u hubUser, xsrf, code string) {
	t := d.t
	var conn net.Conn
	var err error
	for try := 0; try < 3 && conn == nil; try++ {
		// One kernel starts at a time, and one that dies is replaced:
		// jupyter_client picks free ports, frees them and the kernel binds
		// them again, and two kernels (or any other test) may collide.
		d.kernelMu.Lock()
		status, body := d.do(c, "POST", d.userURL(u, "", "api/kernels"), `{"name":"python3"}`, "X-XSRFToken", xsrf, "Content-Type", "application/json")
		require.Equal(t, 201, status, body)
		var kernel struct{ ID string }
		require.NoError(t, json.Unmarshal([]byte(body), &kernel))
		conn, err = d.websocket(c, u, "api/kernels/"+kernel.ID+"/channels?session_id="+word(8),
			"v1.kernel.websocket.jupyter.org", "token."+d.s.add("subprotocol token", word(4)+digits(8)+word(8)))
		d.kernelMu.Unlock()
		if err != nil {
			t.Logf("the kernel of %s did not answer (%v); starting another", u.name, err)
		}
	}
	require.NoError(t, err)
	defer conn.Close()
	msgID := word(10)
	msg, _ := json.Marshal(map[string]any{
		"header":        map[string]any{"msg_id": msgID, "msg_type": "execute_request", "username": u.name, "session": word(10), "version": "5.3", "date": time.Now().UTC().Format(time.RFC3339Nano)},
		"parent_header": map[string]any{}, "metadata": map[string]any{"cellId": d.s.add("cell id", word(10))},
		"content": map[string]any{"code": code, "silent": false, "store_history": true, "allow_stdin": false, "stop_on_error": true},
		"channel": "shell", "buffers": []any{},
	})
	require.NoError(t, wsutil.WriteClientText(conn, msg))
	for {
		b, err := wsutil.ReadServerText(conn)
		require.NoError(t, err, "waiting for the kernel of %s", u.name)
		var m struct {
			Header struct {
				MsgType string `json:"msg_type"`
			} `json:"header"`
			ParentHeader struct {
				MsgID string `json:"msg_id"`
			} `json:"parent_header"`
		}
		_ = json.Unmarshal(b, &m)
		if m.Header.MsgType == "execute_reply" && m.ParentHeader.MsgID == msgID {
			break
		}
	}
	_ = ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
}

// terminal types a secret into a terminal.
func (d *hubDriver) terminal(c *http.Client, u hubUser, name, secret string) {
	t := d.t
	conn, err := d.websocket(c, u, "terminals/websocket/"+name)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, wsutil.WriteClientText(conn, []byte(`["stdin", "export GITHUB_TOKEN=`+secret+`\r"]`)))
	// The echo comes back as stdout.
	for range 20 {
		b, err := wsutil.ReadServerText(conn)
		if err != nil || strings.Contains(string(b), secret) {
			break
		}
	}
	_ = ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
}

// rawRequest sends a request line with text after the version, which no
// HTTP client library writes.
func (d *hubDriver) rawRequest(junk string) {
	conn, err := d.dial(context.Background(), "tcp", "")
	require.NoError(d.t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %shub/api/ HTTP/1.1 %s\r\nHost: %s\r\nConnection: close\r\n\r\n", d.hub.Base(), junk, d.hub.Host())
	_, _ = bufio.NewReader(conn).ReadString('\n')
}

func TestAnonymizationAuditOnARealJupyterHub(t *testing.T) {
	testenv.Need(t, "tcpdump")
	testenv.Need(t, "jupyterhub")
	for _, layout := range []string{"root", "base-url", "subdomains"} {
		t.Run(layout, func(t *testing.T) { auditHub(t, layout) })
	}
}

func auditHub(t *testing.T, layout string) {
	s := &hubSecrets{kind: map[string]string{}}
	o := testenv.HubOptions{
		ProxyToken:   s.add("proxy auth token", digits(8)+word(24)),
		Password:     s.add("password", word(6)+"-"+digits(6)),
		ServiceName:  s.add("service name", "svc-"+word(8)),
		ServiceToken: s.add("service api token", word(12)+digits(20)),
	}
	switch layout {
	case "base-url":
		o.BaseURL = "/" + s.add("base url", "hub-"+word(8)) + "/"
	case "subdomains":
		o.SubdomainHost = s.add("subdomain host", "hub-"+word(8)) + ".test"
	}
	// Users as JupyterHub sees them: a student number, a dotted name typed
	// with capitals, a name with a non-ASCII letter, one with a space and a +.
	given, family := word(5), word(7)
	users := []hubUser{
		{typed: "2026" + digits(7)},
		{typed: strings.ToUpper(given[:1]) + given[1:] + "." + strings.ToUpper(family[:1]) + family[1:]},
		{typed: "j" + "ö" + word(5) + "." + word(6)},
		{typed: word(5) + " " + word(6) + "+" + digits(2)},
	}
	for i := range users {
		users[i].name = strings.ToLower(users[i].typed)
		s.add("user name", users[i].typed)
	}
	named := s.add("named server", word(5)+" "+word(5))

	dir := t.TempDir()
	hub := testenv.StartHub(t, o)
	dump := testenv.Tcpdump(t, filepath.Join(dir, "hub.pcap"), fmt.Sprintf("tcp port %d or tcp port %d", hub.Port, hub.APIPort))
	d := &hubDriver{t: t, hub: hub, s: s}
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() {
			server := ""
			if i == len(users)-1 {
				server = named
			}
			d.session(u, server, i == 0)
		})
	}
	wg.Wait()
	d.rawRequest(s.add("request line text", word(8)))
	// One user stops their server: its route goes.
	code, body := d.admin("DELETE", "users/"+users[1].escaped()+"/server", "")
	require.Contains(t, []int{202, 204}, code, body)
	hub.Stop(t)
	dump.Stop(t)
	if t.Failed() {
		return
	}

	var list strings.Builder
	for i, v := range s.list {
		fmt.Fprintf(&list, "# %d: %s\n%s\n", i+1, s.kind[v], v)
	}
	listFile := filepath.Join(dir, "secrets.txt")
	require.NoError(t, os.WriteFile(listFile, []byte(list.String()), 0o600))
	port, apiPort := strconv.Itoa(hub.Port), strconv.Itoa(hub.APIPort)

	// Raw: every secret is found (else the audit could not fail for it).
	raw := filepath.Join(dir, "raw.trace")
	r := hubreplay(t, nil, "capture", "--pcap", dump.Path, "--port", port, "--api-port", apiPort, "-o", raw, "--raw")
	require.Equal(t, 0, r.code, r.stderr)
	r = hubreplay(t, nil, "verify", raw, "--secrets", listFile, "--show", "all")
	require.Equal(t, 1, r.code, r.stdout)
	found := map[int]bool{}
	for _, m := range regexp.MustCompile(`: listed secret (\d+)`).FindAllStringSubmatch(r.stdout, -1) {
		n, _ := strconv.Atoi(m[1])
		found[n] = true
	}
	for i, v := range s.list {
		switch s.kind[v] {
		case "proxy auth token":
			// Route events keep the route, never the request's headers.
			continue
		case "subdomain host", "base url":
			if !found[i+1] {
				t.Errorf("verify does not find the %s in the raw capture", s.kind[v])
			}
			continue
		}
		assert.True(t, found[i+1], "verify does not find the %s (secret %d) in the raw capture: the audit could not fail for it", s.kind[v], i+1)
	}

	// As an operator captures, saying nothing of the layout: nothing.
	anon := filepath.Join(dir, "anon.trace")
	r = hubreplay(t, nil, "capture", "--pcap", dump.Path, "--port", port, "--api-port", apiPort, "-o", anon)
	require.Equal(t, 0, r.code, r.stderr)
	r = hubreplay(t, nil, "verify", anon, "--secrets", listFile, "--show", "all")
	assert.Equal(t, 0, r.code, "%s: what survived anonymization:\n%s", layout, r.stdout)

	// One pseudonym per user, in requests and in route events.
	_, recs := readAll(t, anon)
	pseudonyms := map[string]bool{}
	for _, rec := range recs {
		if h, ok := rec.(*trace.HTTP); ok && strings.Contains(h.Req.Target, "/user/u-") {
			require.NotEmpty(t, h.User, "a request to a user's server names its user: %s", h.Req.Target)
			pseudonyms[h.User] = true
		}
	}
	// Cookie names and OAuth client ids carry the same pseudonyms.
	inCookies := 0
	userInName := regexp.MustCompile(`jupyterhub-user-(u-[0-9a-f]{8})`)
	for _, rec := range recs {
		if h, ok := rec.(*trace.HTTP); ok {
			line, err := trace.AppendJSON(nil, h)
			require.NoError(t, err)
			for _, m := range userInName.FindAllStringSubmatch(string(line), -1) {
				inCookies++
				assert.True(t, pseudonyms[m[1]], "jupyterhub-user-%s names a user with no requests of their own", m[1])
			}
		}
	}
	assert.NotZero(t, inCookies, "user cookies and OAuth client ids were captured")
	routes := 0
	for _, rec := range recs {
		if r, ok := rec.(*trace.Route); ok && strings.Contains(r.Path, "/user/") {
			routes++
			assert.True(t, pseudonyms[r.User], "route %s is for %q, a user with no requests", r.Path, r.User)
		}
	}
	assert.Len(t, pseudonyms, len(users), "%s: one pseudonym per user in every place: %v", layout, pseudonyms)
	assert.NotZero(t, routes, "the routes API was captured")
	t.Logf("%s: %d secrets, %d records, %d user pseudonyms, %d user routes", layout, len(s.list), len(recs), len(pseudonyms), routes)
}
