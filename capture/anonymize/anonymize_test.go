package anonymize

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// Secrets shaped like the ones a JupyterHub deployment really sends.
const (
	apiToken   = "6a3f0c9e2b8d4f17a5c3e9b1d7f20486"
	hubLogin   = "2|1:0|10:1764000000|20:jupyterhub-hub-login|44:ZDVjNWQ2ZGQ0YzJmNGU3Y2E2YjJjN2Q4ZWYxMjM0NTY=|3f5e2a9b1c7d4e8f0a6b2c9d3e7f1a5b8c2d6e0f4a9b3c7d1e5f2a8b6c0d4e9f"
	sessionID  = "c0ffee12d34db0a7f1e2d3c4b5a69788"
	userCookie = "2|1:0|10:1764000100|26:jupyterhub-user-alice.smith|48:NWQ2ZGQ0YzJmNGU3Y2E2YjJjN2Q4ZWYxMjM0NTY3ODkwYWI=|9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"
	xsrf       = "2|6b1c2f3a|9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a|1764000000"
	proxyToken = "Zm9vYmFyLXByb3h5LWF1dGgtdG9rZW4tc2VjcmV0"
	password   = "correct horse battery staple"
	userName   = "alice.smith"
	clientIP   = "131.152.77.201"
	podIP      = "10.42.7.248"
	code       = "import secrets; print(open('/home/jovyan/grades.csv').read())"
	fileName   = "grades-2026-final.ipynb"
)

func allSecrets() []string {
	return []string{apiToken, hubLogin, sessionID, userCookie, xsrf, proxyToken, password, userName, clientIP, podIP, code, fileName}
}

func newAnon(t *testing.T) *Anonymizer {
	t.Helper()
	a, err := New([]byte("0123456789abcdef0123456789abcdef"), DefaultRules())
	require.NoError(t, err)
	return a
}

func jupyterJSON(msgID, parent, msgType, channel string, content map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{
		"header":        map[string]any{"msg_id": msgID, "msg_type": msgType, "session": sessionID, "username": userName, "version": "5.3", "date": "2026-11-03T15:52:01.123456Z"},
		"parent_header": map[string]any{"msg_id": parent},
		"metadata":      map[string]any{"cellId": fileName},
		"content":       content,
		"buffers":       []any{},
		"channel":       channel,
	})
	return b
}

func v1Binary(channel string, header, parent, metadata, content []byte) []byte {
	parts := [][]byte{[]byte(channel), header, parent, metadata, content}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(parts)+1))
	off := 8 * (len(parts) + 2)
	for _, p := range parts {
		out = binary.LittleEndian.AppendUint64(out, uint64(off))
		off += len(p)
	}
	out = binary.LittleEndian.AppendUint64(out, uint64(off))
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// sensitiveRecords is what a capture of a real session produces before
// anonymization: every kind of secret JupyterHub uses is in it.
func sensitiveRecords() []trace.Record {
	exec := jupyterJSON("a1b2c3d4-0001", "", "execute_request", "shell", map[string]any{"code": code, "silent": false})
	reply := jupyterJSON("f9e8d7c6-0002", "a1b2c3d4-0001", "execute_reply", "shell", map[string]any{"status": "ok", "execution_count": 3.0, "user_expressions": map[string]any{"x": code}})
	hdr, _ := json.Marshal(map[string]any{"msg_id": "b1-0003", "msg_type": "stream", "session": sessionID, "username": userName})
	par, _ := json.Marshal(map[string]any{"msg_id": "a1b2c3d4-0001", "msg_type": "execute_request"})
	cnt, _ := json.Marshal(map[string]any{"name": "stdout", "text": "final grade for " + userName + ": A\n" + password})
	bin := v1Binary("iopub", hdr, par, []byte(`{}`), cnt)
	term := []byte(`["stdin", "export TOKEN=` + apiToken + `\r"]`)
	return []trace.Record{
		&trace.ConnOpen{TS: 1, Conn: 1, Client: clientIP + ":51234", Server: "10.0.0.5:8000"},
		&trace.HTTP{TS: 2, Conn: 1, User: userName, Req: trace.Request{
			Method: "POST", Target: "/hub/login?next=%2Fuser%2Falice.smith%2Flab%2Ftree%2F" + fileName + "&_xsrf=" + xsrf,
			Headers: []trace.Field{{"Host", "jupyter.uni-example.ch"}, {"Cookie", "_xsrf=" + xsrf + "; jupyterhub-session-id=" + sessionID},
				{"X-Forwarded-For", clientIP}, {"X-Real-IP", clientIP}, {"Content-Type", "application/x-www-form-urlencoded"},
				{"Origin", "https://jupyter.uni-example.ch"}},
			BodySize: 60, Body: []byte("username=" + userName + "&password=" + password), BodyForm: trace.FormRaw},
			Resp: &trace.Response{Status: 302, Headers: []trace.Field{{"Location", "/user/alice.smith/lab/tree/" + fileName},
				{"Set-Cookie", "jupyterhub-hub-login=" + hubLogin + "; HttpOnly; Path=/hub/"}}}},
		&trace.HTTP{TS: 3, Conn: 1, Req: trace.Request{Method: "GET", Target: "/user/alice.smith/api/contents/" + fileName + "?content=1&token=" + apiToken,
			Headers: []trace.Field{{"Authorization", "token " + apiToken}, {"Cookie", "jupyterhub-user-alice.smith=" + userCookie},
				{"Referer", "https://jupyter.uni-example.ch/user/alice.smith/lab/tree/" + fileName}, {"X-XSRFToken", xsrf}}},
			Resp: &trace.Response{Status: 200, BodySize: 1200, Body: []byte(`{"content":{"cells":[{"source":"` + code + `"}]}}`), BodyForm: trace.FormRaw,
				Headers: []trace.Field{{"Set-Cookie", "jupyterhub-user-alice.smith=" + userCookie + "; Path=/user/alice.smith/; HttpOnly"}, {"Etag", `"` + apiToken + `"`}}}},
		&trace.WSFrame{TS: 4, Conn: 1, Dir: trace.ClientToServer, Op: trace.OpText, Fin: true, Len: int64(len(exec)), Payload: exec, Form: trace.FormRaw},
		&trace.WSFrame{TS: 5, Conn: 1, Dir: trace.ServerToClient, Op: trace.OpText, Fin: true, Len: int64(len(reply)), Payload: reply, Form: trace.FormRaw},
		&trace.WSFrame{TS: 6, Conn: 1, Dir: trace.ServerToClient, Op: trace.OpBinary, Fin: true, Len: int64(len(bin)), Payload: bin, Form: trace.FormRaw},
		&trace.WSFrame{TS: 7, Conn: 1, Dir: trace.ClientToServer, Op: trace.OpText, Fin: true, Len: int64(len(term)), Payload: term, Form: trace.FormRaw},
		&trace.WSFrame{TS: 8, Conn: 1, Dir: trace.ClientToServer, Op: trace.OpText, Fin: true, Len: 40, Payload: []byte(`{"event":"` + password + `"}`), Form: trace.FormRaw},
		&trace.Route{TS: 9, Op: trace.RouteAdd, Path: "/user/alice.smith/", Target: "http://" + podIP + ":8888", User: userName,
			Data: json.RawMessage(`{"user":"` + userName + `","server_name":"","last_activity":"2026-11-03T15:52:01Z"}`)},
		&trace.HTTP{TS: 10, Conn: 2, Req: trace.Request{Method: "GET", Target: "/api/routes", Headers: []trace.Field{{"Authorization", "token " + proxyToken}}}},
		&trace.Route{TS: 10, Op: trace.RouteAdd, Path: "/user/alice.smith/", Target: "http://jupyter-alice-2esmith:8888"},
	}
}

func TestVerifyFindsEverySecretInARawTraceAndNoneAfterAnonymizing(t *testing.T) {
	raw := NewVerifier(allSecrets())
	for _, r := range sensitiveRecords() {
		raw.Check(r)
	}
	found := map[string]bool{}
	for _, f := range raw.Findings {
		found[f.What] = true
	}
	for i := range allSecrets() {
		assert.True(t, found["listed secret "+strconv.Itoa(i+1)], "verify misses secret %d in the raw records: the check could not fail", i+1)
	}
	assert.True(t, found["token-shaped value"])

	a := newAnon(t)
	v := NewVerifier(allSecrets())
	for _, r := range sensitiveRecords() {
		a.Record(r)
		v.Check(r)
	}
	for _, f := range v.Findings {
		t.Errorf("leak after anonymization: %s", f)
	}
}

func TestPseudonymsAreStableAndKeyed(t *testing.T) {
	a := newAnon(t)
	recs := sensitiveRecords()
	for _, r := range recs {
		a.Record(r)
	}
	u := a.User(userName)
	assert.Regexp(t, `^u-[0-9a-f]{8}$`, u)
	login := recs[1].(*trace.HTTP)
	contents := recs[2].(*trace.HTTP)
	route := recs[8].(*trace.Route)
	assert.Equal(t, u, contents.User)
	assert.Equal(t, u, route.User)
	assert.Equal(t, "/user/"+u+"/", route.Path)
	assert.True(t, strings.HasPrefix(contents.Req.Target, "/user/"+u+"/api/contents/p-"), contents.Req.Target)
	assert.True(t, strings.HasSuffix(strings.Split(contents.Req.Target, "?")[0], ".ipynb"), "the extension stays: %s", contents.Req.Target)
	assert.Contains(t, contents.Req.Target, "content=1", "harmless query values stay")
	assert.NotContains(t, contents.Req.Target, "token")
	assert.NotContains(t, login.Req.Target, "_xsrf")
	assert.Contains(t, login.Req.Target, "next=%2Fuser%2F"+u+"%2Flab%2Ftree%2Fp-", "a path in a query is anonymized as a path")
	assert.Equal(t, trace.Field{"Cookie", "jupyterhub-user-" + u + "=REDACTED"}, contents.Req.Headers[1])
	assert.Equal(t, trace.Field{"Authorization", "token REDACTED"}, contents.Req.Headers[0])
	assert.Contains(t, contents.Resp.Headers[0][1], "Path=/user/"+u+"/")
	assert.Nil(t, contents.Resp.Body, "bodies are not kept")
	assert.Equal(t, int64(1200), contents.Resp.BodySize, "their size is")
	for _, f := range login.Req.Headers {
		assert.NotContains(t, []string{"X-Forwarded-For", "X-Real-IP"}, f[0], "client address headers are removed")
	}
	assert.Regexp(t, `^http://h-[0-9a-f]{8}:8888$`, route.Target)
	assert.JSONEq(t, `{"user":"`+u+`","server_name":"","last_activity":"2026-11-03T15:52:01Z"}`, string(route.Data))
	conn := recs[0].(*trace.ConnOpen)
	assert.Regexp(t, `^c-[0-9a-f]{8}:51234$`, conn.Client)

	// The same key gives the same pseudonyms in another capture; another key does not.
	b := newAnon(t)
	assert.Equal(t, u, b.User(userName))
	c, err := New([]byte("another key, also 32 bytes long!"), DefaultRules())
	require.NoError(t, err)
	assert.NotEqual(t, u, c.User(userName))
	_, err = New([]byte("short"), DefaultRules())
	assert.ErrorContains(t, err, "at least 16")
}

func TestJupyterMessagesKeepStructureSizeAndReplyMatching(t *testing.T) {
	a := newAnon(t)
	recs := sensitiveRecords()
	for _, r := range recs {
		a.Record(r)
	}
	req, reply, bin, term, other := recs[3].(*trace.WSFrame), recs[4].(*trace.WSFrame), recs[5].(*trace.WSFrame), recs[6].(*trace.WSFrame), recs[7].(*trace.WSFrame)
	for _, f := range []*trace.WSFrame{req, reply, bin, term} {
		assert.Equal(t, trace.FormRedacted, f.Form)
		assert.Len(t, f.Payload, int(f.Len), "a redacted payload keeps its size")
	}
	assert.Equal(t, "execute_request", req.MsgType)
	assert.Equal(t, "shell", req.Channel)
	assert.Equal(t, "execute_reply", reply.MsgType)
	assert.Equal(t, "stream", bin.MsgType)
	assert.Equal(t, "iopub", bin.Channel)
	assert.Equal(t, "stdin", term.MsgType)
	assert.Nil(t, other.Payload, "an unknown payload keeps only its length")
	assert.Equal(t, trace.FormNone, other.Form)

	var rq, rp struct {
		Header       map[string]any `json:"header"`
		ParentHeader map[string]any `json:"parent_header"`
		Content      map[string]any `json:"content"`
	}
	require.NoError(t, json.Unmarshal(req.Payload, &rq))
	require.NoError(t, json.Unmarshal(reply.Payload, &rp))
	assert.Equal(t, rq.Header["msg_id"], rp.ParentHeader["msg_id"], "a reply still names its request")
	assert.Regexp(t, `^m-[0-9a-f]{20}$`, rq.Header["msg_id"])
	assert.Equal(t, a.User(userName), rq.Header["username"])
	assert.Equal(t, map[string]any{"status": "ok", "execution_count": 3.0}, withoutPad(rp.Content))
	assert.Equal(t, map[string]any{"silent": false}, withoutPad(rq.Content))

	// The binary frame keeps the v1 layout, so its parent still matches.
	n := binary.LittleEndian.Uint64(bin.Payload)
	assert.Equal(t, uint64(6), n)
	o2, o3 := binary.LittleEndian.Uint64(bin.Payload[24:]), binary.LittleEndian.Uint64(bin.Payload[32:])
	var parent map[string]any
	require.NoError(t, json.Unmarshal(bin.Payload[o2:o3], &parent))
	assert.Equal(t, rq.Header["msg_id"], parent["msg_id"])
}

// What a kernel sends is parsed as encoding/json parsed it: output with
// bytes that are not UTF-8, a name repeated (the last wins), a name in
// another case. The skeleton stays, the secret goes.
func TestKernelMessagesParseLeniently(t *testing.T) {
	a := newAnon(t)
	secret := "sk-5f0c2a9e7d314b86 " + strings.Repeat("output ", 30)
	for name, payload := range map[string]string{
		"invalid UTF-8 in the output": `{"header":{"msg_id":"1","msg_type":"stream","session":"s"},"parent_header":{},` +
			`"content":{"name":"stdout","text":"` + secret + "\xff\xfe ÿþ" + `"},"channel":"iopub"}`,
		"a repeated name": `{"header":{"msg_type":"stream"},"header":{"msg_id":"1","msg_type":"stream"},"parent_header":{},` +
			`"content":{"name":"stdout","text":"` + secret + `"},"channel":"iopub"}`,
		"a name in capitals": `{"Header":{"msg_id":"1","msg_type":"stream"},"parent_header":{},` +
			`"content":{"name":"stdout","text":"` + secret + `"},"channel":"iopub"}`,
	} {
		f := &trace.WSFrame{Op: trace.OpText, Fin: true, Len: int64(len(payload)), Payload: []byte(payload), Form: trace.FormRaw}
		a.Record(f)
		assert.Equal(t, "stream", f.MsgType, name)
		assert.Equal(t, "iopub", f.Channel, name)
		assert.Equal(t, trace.FormRedacted, f.Form, name)
		assert.Len(t, f.Payload, len(payload), name)
		assert.NotContains(t, string(f.Payload), secret, name)
	}
}

func withoutPad(m map[string]any) map[string]any {
	delete(m, "_pad")
	return m
}

func TestPaths(t *testing.T) {
	a := newAnon(t)
	u := a.User("bob")
	kernel := "5c8e76c7-9f0e-4d43-8b1e-2a5b6c7d8e9f"
	for in, want := range map[string]string{
		"/":                                  "/",
		"/hub/login":                         "/hub/login",
		"/hub/static/js/home.js?v=20260101":  "/hub/static/js/home.js?v=20260101",
		"/user/bob/static/lab/main.abc12.js": "/user/" + u + "/static/lab/main.abc12.js",
		"/user/bob/lab/extensions/@jupyter-widgets/jupyterlab-manager/static/remoteEntry.9f.js": "/user/" + u + "/lab/extensions/@jupyter-widgets/jupyterlab-manager/static/remoteEntry.9f.js",
		"/hub/api/users/bob/server":       "/hub/api/users/" + u + "/server",
		"/hub/spawn-pending/bob":          "/hub/spawn-pending/" + u,
		"/api/routes/user/bob/":           "/api/routes/user/" + u + "/",
		"/user/bob/api/kernels/" + kernel: "/user/" + u + "/api/kernels/" + a.id(kernel),
		"/user/bob/api/kernels/" + kernel + "/channels?session_id=" + kernel: "/user/" + u + "/api/kernels/" + a.id(kernel) + "/channels?session_id=" + a.id(kernel),
		"/user/bob/terminals/websocket/1":                                    "/user/" + u + "/terminals/websocket/1",
	} {
		got, _ := a.Target(in)
		assert.Equal(t, want, got, "for %s", in)
	}
	got, user := a.Target("/user/bob/lab/tree/thesis/chapter%201.ipynb")
	assert.Equal(t, u, user)
	assert.Regexp(t, `^/user/u-[0-9a-f]{8}/lab/tree/p-[0-9a-f]{8}/p-[0-9a-f]{8}\.ipynb$`, got)
	// A static path keeps its segments only as they are on the wire: an
	// escaped one decodes to a plain name, but what would be kept is the
	// escaped text, token and all (found by FuzzAnonymize).
	token := "6a3f0c9e2b8d4f17a5c3e9b1d7f20486"
	for _, in := range []string{"/hub/static/%" + token + ".js", "/user/bob/static/lab/%" + token + ".js"} {
		got, _ := a.Target(in)
		assert.NotContains(t, got, token[2:], "for %s", in)
	}
}

func TestLooksSecret(t *testing.T) {
	for _, s := range []string{apiToken, hubLogin, userCookie, xsrf, proxyToken, "token " + apiToken,
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl", "dGhlIHNhbXBsZSBub25jZQ=="} {
		assert.True(t, LooksSecret(s), "%q looks like a secret", s)
	}
	a := newAnon(t)
	// What the anonymizer writes must not look like a secret, or verify
	// would cry wolf on every trace.
	for _, s := range []string{a.User("x"), a.id("5c8e76c7-9f0e-4d43-8b1e-2a5b6c7d8e9f"), a.pseudo("m-", "msg", "x", 20),
		"/user/u-1a2b3c4d/static/lab/remoteEntry.5cbb9d2323598fbda535.js", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
		"application/json; charset=UTF-8", "v1.kernel.websocket.jupyter.org", "2026-11-03T15:52:01.123456Z", `"e-0123456789ab"`} {
		assert.False(t, LooksSecret(s), "%q does not look like a secret", s)
	}
}

func TestRulesFile(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/rules.yaml"
	require.NoError(t, os.WriteFile(p, []byte("keep_headers: [Content-Type]\nhost: proxy.test\n"), 0o600))
	r, err := LoadRules(p)
	require.NoError(t, err)
	assert.Equal(t, []string{"Content-Type"}, r.KeepHeaders)
	assert.Equal(t, "proxy.test", r.Host)
	assert.NotEmpty(t, r.DropHeaders, "lists not in the file keep their defaults")

	require.NoError(t, os.WriteFile(p, []byte("keep_header: [Cookie]\n"), 0o600))
	_, err = LoadRules(p)
	assert.ErrorContains(t, err, "keep_header", "a misspelt rule is an error, not a silent default")
}

// A value under a query key whose values are kept (v, _, hash, type …)
// stays only when it is short or a version: a random token there never
// does, however it happens to look. Before, about one in two hundred
// random 32-character tokens slipped through (TestAnonymizationAudit's
// "random query value" leaked so once).
func TestKeptQueryKeysNeverKeepATokenByLuck(t *testing.T) {
	a := newAnon(t)
	rng := rand.New(rand.NewPCG(7, 11))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range 5000 {
		b := make([]byte, 17+i%48)
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		tok := string(b)
		for _, key := range []string{"v", "_", "hash", "type", "format", "status"} {
			out := a.Query(key + "=" + tok)
			require.NotContains(t, out, tok, "%s=%s kept", key, tok)
		}
	}
	// What the keys are kept for still is.
	for _, q := range []string{"v=1.2.3", "_=1701599999999", "type=notebook", "format=text", "content=1", "v=20231201.1", "v=6d3b9e1a"} {
		assert.Equal(t, q, a.Query(q))
	}
}
