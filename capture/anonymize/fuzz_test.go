package anonymize

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hubreplay/hubreplay/trace"
)

// FuzzAnonymize puts a known token into arbitrary targets, headers, route
// data and WebSocket payloads: whatever the shape around it, the
// anonymized record must not hold it, and nothing may panic.
func FuzzAnonymize(f *testing.F) {
	const token = "6a3f0c9e2b8d4f17a5c3e9b1d7f20486"
	for _, s := range []string{
		"/user/alice/api/contents/x.ipynb?token=T",
		"/user/alice/static/T/main.js",
		"/hub/static/js/T.js?v=1",
		"/user/T/lab",
		"/api/routes/user/T",
		"jupyterhub-session-id=T; _xsrf=2|a|b|1",
		"token T",
		`{"user":"T","server_name":"T","last_activity":"T"}`,
		`{"header":{"msg_id":"T","msg_type":"execute_request","session":"T","username":"T","date":"T"},"parent_header":{"msg_id":"T"},"content":{"status":"T","code":"T"},"channel":"T"}`,
		`["stdin","T"]`,
		"http://T:8888/user/T/",
		"https://hub.example:T/?T",
		"/user/alice/api/kernels/T/channels?session_id=T",
		"/jhub/user/T/api/contents/T.csv",
		"/jhub/hub/api/users/T/servers/T/progress",
		"/alice.hub.example/user/alice/T/",
		"/T.hub.example/user/T/",
		"jupyterhub-user-alice-T-oauth-state=x; jupyterhub-user-T=y; notes-T=z",
		"/static/viewer.html/file=http://T/user/T/files/T.csv&owner=T",
		"/user/alice/tree?T&path=T.T",
		"v1.kernel.websocket.jupyter.org, token.T",
	} {
		f.Add(s, "X-Custom")
	}
	a, err := New([]byte("fuzz key, at least sixteen bytes"), DefaultRules())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s, header string) {
		if !strings.Contains(s, "T") {
			return
		}
		in := strings.ReplaceAll(s, "T", token)
		recs := []trace.Record{
			&trace.HTTP{Req: trace.Request{Target: in, Headers: []trace.Field{{header, in}, {"Cookie", in}, {"Referer", in}, {"Sec-WebSocket-Protocol", in}}},
				Resp: &trace.Response{Reason: in, Headers: []trace.Field{{"Set-Cookie", in}, {"Location", in}, {"Content-Type", in}}}},
			&trace.Route{Path: in, Target: in, User: in, Data: json.RawMessage(in)},
			&trace.WSFrame{Op: trace.OpText, Len: int64(len(in)), Payload: []byte(in), Form: trace.FormRaw},
			&trace.ConnOpen{Client: in, Server: in},
		}
		for _, r := range recs {
			a.Record(r)
			line, err := trace.AppendJSON(nil, r)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(line), token) {
				t.Fatalf("token survived in %s", line)
			}
			if w, ok := r.(*trace.WSFrame); ok && strings.Contains(string(w.Payload), token) {
				t.Fatalf("token survived in a payload: %q", w.Payload)
			}
		}
	})
}
