package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/internal/testenv"
)

// The anonymization audit: a capture full of every kind of secret a
// JupyterHub deployment puts on the wire, fresh random ones each run, plus
// random high-entropy strings where nothing says they are secret. Captured
// raw, verify finds every one of them (the check can fail); captured as
// operators do, verify finds none.

func randHex(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// auditSecrets are this run's secrets, by kind.
type auditSecrets map[string]string

func newAuditSecrets() auditSecrets {
	now := strconv.FormatInt(time.Now().Unix(), 10)
	tornado := func(name string) string { // tornado's signed value, version 2
		v := base64.StdEncoding.EncodeToString([]byte(randHex(32)))
		return fmt.Sprintf("2|1:0|%d:%s|%d:%s|%d:%s|%s", len(now), now, len(name), name, len(v), v, randHex(64))
	}
	jwtPart := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	return auditSecrets{
		"api token (Authorization: token)":          randHex(32),
		"api token (?token=)":                       randHex(32),
		"oauth access token (Bearer)":               randHex(32),
		"oauth code":                                randB64(24),
		"oauth state":                               randB64(24),
		"oauth client secret":                       randHex(32),
		"new api token in a JSON reply":             randHex(32),
		"proxy auth token (CONFIGPROXY_AUTH_TOKEN)": randHex(64),
		"jupyterhub-hub-login cookie":               tornado("jupyterhub-hub-login"),
		"jupyterhub-user cookie":                    tornado("jupyterhub-user-ada.lovelace"),
		"oauth-state cookie":                        tornado("jupyterhub-user-ada.lovelace-oauth-state"),
		"jupyterhub-session-id cookie":              randHex(32),
		"_xsrf":                                     "2|" + randHex(8) + "|" + randHex(32) + "|" + now,
		"password":                                  "pw-" + randB64(9),
		"basic auth password":                       "bp-" + randB64(9),
		"id_token (JWT)":                            jwtPart(`{"alg":"RS256","typ":"JWT"}`) + "." + jwtPart(`{"sub":"`+randHex(16)+`","name":"Ada Lovelace"}`) + "." + randB64(64),
		"terminal export":                           randB64(30),
		"kernel code secret":                        randB64(30),
		// Nothing marks these as secret but how random they look.
		"random path segment":   randB64(24),
		"random query value":    randB64(24),
		"random custom header":  randB64(24),
		"random websocket text": randB64(24),
		"random json value":     randB64(24),
	}
}

// auditServer answers like a hub, its OAuth provider, a user server and
// CHP's routes API, putting secrets in what it sends back too.
func auditServer(s auditSecrets) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hub/login", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.SetCookie(w, &http.Cookie{Name: "jupyterhub-hub-login", Value: s["jupyterhub-hub-login cookie"], Path: "/hub/", HttpOnly: true})
		http.SetCookie(w, &http.Cookie{Name: "jupyterhub-session-id", Value: s["jupyterhub-session-id cookie"], Path: "/"})
		w.Header().Set("Location", "/hub/api/oauth2/authorize?client_id=jupyterhub-user-ada.lovelace&state="+s["oauth state"]+"&response_type=code")
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("/hub/api/oauth2/authorize", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/user/ada.lovelace/oauth_callback?code="+s["oauth code"]+"&state="+s["oauth state"])
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("/hub/api/oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token": %q, "token_type": "Bearer", "id_token": %q}`, s["oauth access token (Bearer)"], s["id_token (JWT)"])
	})
	mux.HandleFunc("/user/ada.lovelace/oauth_callback", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "jupyterhub-user-ada.lovelace", Value: s["jupyterhub-user cookie"], Path: "/user/ada.lovelace/"})
		http.SetCookie(w, &http.Cookie{Name: "jupyterhub-user-ada.lovelace-oauth-state", Value: "", MaxAge: -1})
		http.SetCookie(w, &http.Cookie{Name: "_xsrf", Value: s["_xsrf"], Path: "/user/ada.lovelace/"})
		w.Header().Set("Location", "/user/ada.lovelace/lab")
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("/hub/api/users/ada.lovelace/tokens", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token": %q, "id": "a17", "note": "grading"}`, s["new api token in a JSON reply"])
	})
	mux.HandleFunc("/api/routes/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("/user/ada.lovelace/api/kernels/", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			msg, op, err := wsutil.ReadClientData(conn)
			if err != nil || op == ws.OpClose {
				return
			}
			// Kernel output echoes the code, and some of it.
			reply := fmt.Sprintf(`{"header":{"msg_type":"stream","username":"ada.lovelace"},"content":{"text":%q}}`, string(msg)+" "+s["random json value"])
			if wsutil.WriteServerMessage(conn, op, []byte(reply)) != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path": %q, "owner": "ada.lovelace", "etag": %q}`, r.URL.Path, s["random json value"])
	})
	return mux
}

// driveAudit makes a browser's and a hub's requests with every secret.
func driveAudit(t *testing.T, addr, apiAddr string, s auditSecrets) {
	base := "http://" + addr
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	cookies := "jupyterhub-hub-login=" + s["jupyterhub-hub-login cookie"] + "; jupyterhub-session-id=" + s["jupyterhub-session-id cookie"] +
		"; jupyterhub-user-ada.lovelace=" + s["jupyterhub-user cookie"] + "; jupyterhub-user-ada.lovelace-oauth-state=" + s["oauth-state cookie"] + "; _xsrf=" + s["_xsrf"]
	do := func(method, target, body string, hdr ...string) {
		req, err := http.NewRequest(method, base+target, strings.NewReader(body))
		require.NoError(t, err)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	form := "application/x-www-form-urlencoded"
	do("POST", "/hub/login?next=%2Fuser%2Fada.lovelace%2Flab", url.Values{"username": {"ada.lovelace"}, "password": {s["password"]}, "_xsrf": {s["_xsrf"]}}.Encode(), "Content-Type", form)
	do("GET", "/hub/api/oauth2/authorize?client_id=jupyterhub-user-ada.lovelace&redirect_uri=%2Fuser%2Fada.lovelace%2Foauth_callback&response_type=code&state="+s["oauth state"], "", "Cookie", cookies)
	do("GET", "/user/ada.lovelace/oauth_callback?code="+s["oauth code"]+"&state="+s["oauth state"], "", "Cookie", cookies)
	do("POST", "/hub/api/oauth2/token", url.Values{"client_id": {"jupyterhub-user-ada.lovelace"}, "client_secret": {s["oauth client secret"]}, "code": {s["oauth code"]}, "grant_type": {"authorization_code"}}.Encode(), "Content-Type", form)
	do("GET", "/hub/api/user", "", "Authorization", "Bearer "+s["oauth access token (Bearer)"])
	do("POST", "/hub/api/users/ada.lovelace/tokens", `{"note":"grading","expires_in":3600}`, "Authorization", "token "+s["api token (Authorization: token)"], "X-XSRFToken", s["_xsrf"], "Cookie", cookies)
	do("GET", "/user/ada.lovelace/api/contents/notebooks?content=1&token="+s["api token (?token=)"], "")
	do("GET", "/user/ada.lovelace/files/"+s["random path segment"]+"/data.csv?v="+s["random query value"], "", "X-Request-Trace", s["random custom header"], "Cookie", cookies)
	do("GET", "/hub/api/users", "", "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("grader:"+s["basic auth password"])))
	// The hub adds the user's route: CHP's token, the pod's address.
	req, err := http.NewRequest("POST", "http://"+apiAddr+"/api/routes/user/ada.lovelace", strings.NewReader(`{"target": "http://10.42.3.17:8888", "user": "ada.lovelace", "last_activity": null}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "token "+s["proxy auth token (CONFIGPROXY_AUTH_TOKEN)"])
	resp, err := client.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	conn, _, _, err := ws.Dial(t.Context(), "ws://"+addr+"/user/ada.lovelace/api/kernels/5c8e76c7-9f0e-4d43-8b1e-2a5b6c7d8e9f/channels?session_id=s1&token="+s["api token (?token=)"])
	require.NoError(t, err)
	defer conn.Close()
	for _, msg := range []string{
		`{"header":{"msg_type":"execute_request","username":"ada.lovelace"},"content":{"code":"KEY = '` + s["kernel code secret"] + `'"}}`,
		`["stdin", "export GITHUB_TOKEN=` + s["terminal export"] + `\r"]`,
		`{"note": "` + s["random websocket text"] + `"}`,
	} {
		require.NoError(t, wsutil.WriteClientText(conn, []byte(msg)))
		_, err := wsutil.ReadServerText(conn)
		require.NoError(t, err)
	}
	_ = ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
}

func TestAnonymizationAudit(t *testing.T) {
	secrets := newAuditSecrets()
	// The proxy's public port and its routes API port.
	var addrs [2]string
	var ports [2]string
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := &http.Server{Handler: auditServer(secrets), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		addrs[i], ports[i] = l.Addr().String(), strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}
	dir := t.TempDir()
	d := testenv.Tcpdump(t, filepath.Join(dir, "audit.pcap"), fmt.Sprintf("tcp port %s or tcp port %s", ports[0], ports[1]))
	driveAudit(t, addrs[0], addrs[1], secrets)
	d.Stop(t)

	kinds := slices.Sorted(maps.Keys(secrets))
	var list strings.Builder
	for _, kind := range kinds {
		fmt.Fprintf(&list, "# %s\n%s\n", kind, secrets[kind])
	}
	// The user's name and the pod's address are secrets too.
	kinds = append(kinds, "user name", "pod address")
	fmt.Fprintf(&list, "ada.lovelace\n10.42.3.17\n")
	listFile := filepath.Join(dir, "secrets.txt")
	require.NoError(t, os.WriteFile(listFile, []byte(list.String()), 0o600))
	p, api := ports[0], ports[1]

	// Raw: every secret is found, each one by itself.
	raw := filepath.Join(dir, "raw.trace")
	r := hubreplay(t, nil, "capture", "--pcap", d.Path, "--port", p, "--api-port", api, "-o", raw, "--raw")
	require.Equal(t, 0, r.code, r.stderr)
	r = hubreplay(t, nil, "verify", raw, "--secrets", listFile, "--show", "100000")
	require.Equal(t, 1, r.code, r.stdout)
	found := map[int]bool{}
	for _, m := range regexp.MustCompile(`listed secret (\d+)`).FindAllStringSubmatch(r.stdout, -1) {
		n, _ := strconv.Atoi(m[1])
		found[n] = true
	}
	for i, kind := range kinds {
		if kind == "proxy auth token (CONFIGPROXY_AUTH_TOKEN)" {
			// Route events keep the route, not the request's headers: not
			// even a raw trace holds CHP's token.
			assert.False(t, found[i+1], "CHP's token in a raw trace")
			continue
		}
		assert.True(t, found[i+1], "verify does not find the %s in the raw capture: the audit could not fail for it", kind)
	}

	// As operators capture: nothing.
	anon := filepath.Join(dir, "anon.trace")
	r = hubreplay(t, nil, "capture", "--pcap", d.Path, "--port", p, "--api-port", api, "-o", anon)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `\d+ HTTP exchanges, [1-9]\d* WebSocket frames`, r.stderr)
	r = hubreplay(t, nil, "verify", anon, "--secrets", listFile, "--show", "100")
	assert.Equal(t, 0, r.code, "leaks:\n%s", r.stdout)
	assert.Contains(t, r.stdout, "no secrets found")
	b, err := os.ReadFile(anon)
	require.NoError(t, err)
	require.NotEmpty(t, b)
}
