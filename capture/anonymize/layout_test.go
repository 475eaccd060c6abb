package anonymize

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// Each case below is a survivor a security tester found in traces of a
// real JupyterHub: what must not be in the anonymized record.

func anonWith(t *testing.T, r Rules) *Anonymizer {
	t.Helper()
	a, err := New([]byte("0123456789abcdef0123456789abcdef"), r)
	require.NoError(t, err)
	return a
}

func recordJSON(t *testing.T, r trace.Record) string {
	t.Helper()
	b, err := trace.AppendJSON(nil, r)
	require.NoError(t, err)
	return string(b)
}

func TestUsersUnderABaseURL(t *testing.T) {
	for _, given := range []string{"", "/jhub/"} {
		r := DefaultRules()
		r.BaseURL = given
		a := anonWith(t, r)
		route := &trace.Route{Op: trace.RouteAdd, Path: "/jhub/user/20200107528/", Target: "http://127.0.0.1:41234",
			Data: json.RawMessage(`{"user":"20200107528","server_name":"","last_activity":"2026-12-02T10:00:00Z"}`)}
		a.Record(route)
		u := a.User("20200107528")
		assert.Equal(t, "/"+a.segment("jhub")+"/user/"+u+"/", route.Path, "base URL %q", given)
		assert.Equal(t, u, route.User)
		for target, want := range map[string]string{
			"/jhub/user/20200107528/api/kernels":        "/user/" + u + "/api/kernels",
			"/jhub/hub/api/users/Hevej.Gisiso/server":   "/hub/api/users/" + a.User("hevej.gisiso") + "/server",
			"/jhub/hub/spawn-pending/hevej.gisiso":      "/hub/spawn-pending/" + a.User("hevej.gisiso"),
			"/jhub/hub/static/js/home.js?v=20260101":    "/hub/static/js/home.js?v=20260101",
			"/jhub/user/20200107528/static/lab/main.js": "/user/" + u + "/static/lab/main.js",
		} {
			h := &trace.HTTP{Req: trace.Request{Method: "GET", Target: target}}
			a.Record(h)
			assert.Equal(t, "/"+a.segment("jhub")+want, h.Req.Target, "base URL %q, %s", given, target)
			if strings.Contains(want, "/u-") {
				assert.NotEmpty(t, h.User, "the record names its user: %s", target)
			}
			assert.NotContains(t, recordJSON(t, h), "gisiso")
			assert.NotContains(t, recordJSON(t, h), "20200107528")
		}
	}
}

func TestUsersOnSubdomains(t *testing.T) {
	for _, given := range []string{"", "http://hub.uni-example.edu:8000"} {
		r := DefaultRules()
		r.SubdomainHost = given
		a := anonWith(t, r)
		// JupyterHub's host label: quote(name).replace('%', '_').lower()
		route := &trace.Route{Op: trace.RouteAdd, Path: "/j_c3_b6rg_40uni.hub.uni-example.edu/user/j%C3%B6rg%40uni/",
			Data: json.RawMessage(`{"user":"jörg@uni","server_name":""}`)}
		a.Record(route)
		u := a.User("jörg@uni")
		assert.Equal(t, "/"+u+".hub.example/user/"+u+"/", route.Path, "subdomain host %q", given)
		assert.Equal(t, u, route.User)
		h := &trace.HTTP{Req: trace.Request{Method: "GET", Target: "/user/j%C3%B6rg%40uni/lab",
			Headers: []trace.Field{{"Host", "j_c3_b6rg_40uni.hub.uni-example.edu:8000"},
				{"Referer", "http://j_c3_b6rg_40uni.hub.uni-example.edu:8000/user/j%C3%B6rg%40uni/tree"},
				{"Origin", "http://hub.uni-example.edu:8000"}}}}
		a.Record(h)
		assert.Equal(t, u, h.User)
		assert.Equal(t, trace.Field{"Host", u + ".hub.example:8000"}, h.Req.Headers[0])
		assert.Equal(t, "http://"+u+".hub.example:8000/user/"+u+"/tree", h.Req.Headers[1][1])
		assert.Equal(t, "http://hub.example:8000", h.Req.Headers[2][1])
		out := recordJSON(t, h) + recordJSON(t, route)
		for _, s := range []string{"j_c3", "uni-example", "rg_40"} {
			assert.NotContains(t, out, s)
		}
	}
}

func TestOnePseudonymPerUserAndServer(t *testing.T) {
	a := anonWith(t, DefaultRules())
	route := &trace.Route{Op: trace.RouteAdd, Path: "/user/ana%20mar%C3%ADa+1/thesis%20work/",
		Data: json.RawMessage(`{"user":"Ana María+1","server_name":"thesis work"}`)}
	a.Record(route)
	u, s := a.User("ana maría+1"), a.Server("thesis work")
	assert.Equal(t, "/user/"+u+"/"+s+"/", route.Path)
	assert.JSONEq(t, `{"user":"`+u+`","server_name":"`+s+`"}`, string(route.Data))
	h := &trace.HTTP{Req: trace.Request{Method: "GET", Target: "/hub/api/users/ana%20mar%C3%ADa%2B1/servers/thesis%20work/progress",
		Headers: []trace.Field{{"Cookie", "jupyterhub-user-ana%20mar%C3%ADa%2B1-thesis%20work=x; jupyterhub-user-ana%20mar%C3%ADa%2B1-oauth-state=y; notes-view-ana maría+1=z"}}}}
	a.Record(h)
	assert.Equal(t, "/hub/api/users/"+u+"/servers/"+s+"/progress", h.Req.Target)
	cookies := h.Req.Headers[0][1]
	assert.Contains(t, cookies, "jupyterhub-user-"+u+"-"+s+"=REDACTED")
	assert.Contains(t, cookies, "jupyterhub-user-"+u+"-oauth-state=REDACTED")
	assert.NotContains(t, cookies, "notes-view", "a cookie name that is not JupyterHub's is replaced whole")
	q, _ := a.Target("/hub/api/oauth2/authorize?client_id=jupyterhub-user-ana%2520mar%25C3%25ADa%252B1-thesis%2520work")
	assert.Equal(t, "/hub/api/oauth2/authorize?client_id=jupyterhub-user-"+u+"-"+s, q)
}

func TestNothingVerbatimOutsideTheClosedSets(t *testing.T) {
	a := anonWith(t, DefaultRules())
	h := &trace.HTTP{
		Req: trace.Request{Method: "GET", Proto: "HTTP/1.1 buxasijo",
			Target: "/static/viewer.html/file=http://jhub-sesi.tuxok-86.edu/user/ruruc.ramivop%40kubo26.edu/files/reports_xihazi/salaries_mitave.csv&owner=ruruc",
			Headers: []trace.Field{{"Authorization", "tvb2epzdjueo05 secretpart"}, {"Sec-WebSocket-Protocol", "v1.kernel.websocket.jupyter.org, token.p3mz0fcn35tlexlzuuh95leaoy7y00"},
				{"X-Vumol-Jacidu", "hello"}, {"Cookie", "notes-view-vumol.jacidu=1"}}},
		Resp: &trace.Response{Status: 403, Reason: "Forbidden for vumol.jacidu nazelujuk", Proto: "HTTP/1.1"},
	}
	a.Record(h)
	out := recordJSON(t, h)
	for _, s := range []string{"buxasijo", "jhub-sesi", "tuxok", "ruruc", "kubo26", "xihazi", "mitave", "tvb2epzdjueo05",
		"p3mz0fcn35tlexlzuuh95leaoy7y00", "vumol", "jacidu", "nazelujuk", ".edu"} {
		assert.NotContains(t, out, s)
	}
	assert.Equal(t, "HTTP/1.1", h.Req.Proto)
	assert.Equal(t, "Forbidden", h.Resp.Reason, "the standard reason phrase")
	assert.Equal(t, trace.Field{"Authorization", "REDACTED"}, h.Req.Headers[0])
	assert.Regexp(t, `^v1\.kernel\.websocket\.jupyter\.org, sp-[0-9a-f]{8}$`, h.Req.Headers[1][1])
	assert.Regexp(t, `^X-Anon-[0-9a-f]{8}$`, h.Req.Headers[2][0])

	q, _ := a.Target("/user/bob/tree/thesis?o15pzrf5n0xxokdpw703so&path=report.secretword")
	assert.NotContains(t, q, "o15pzrf5n0xxokdpw703so")
	assert.NotContains(t, q, "secretword", "no free-form tail")
	p, _ := a.Target("/user/bob/files/report.secretword/data.CSV")
	assert.Regexp(t, `^/user/u-[0-9a-f]{8}/files/p-[0-9a-f]{8}/p-[0-9a-f]{8}\.csv$`, p, "extensions from the list only")
}

func TestVerifyFindsNamesAsJupyterHubKeepsThem(t *testing.T) {
	v := NewVerifier([]string{"Hevej.Gisiso", "Ruruc Ramivop@kubo26.edu"})
	v.Check(&trace.HTTP{Req: trace.Request{Method: "GET", Target: "/user/hevej.gisiso/lab"}})
	v.Check(&trace.Route{Op: trace.RouteAdd, Path: "/user/p-1a2b3c4d.ramivop/"})
	v.Check(&trace.Route{Op: trace.RouteAdd, Path: "/user/u-1a2b3c4d/"})
	require.Len(t, v.Findings, 2, "%v", v.Findings)
	assert.Equal(t, int64(1), v.Findings[0].Record)
	assert.Equal(t, "listed secret 1", v.Findings[0].What, "a name listed in mixed case is found lower-cased")
	assert.Equal(t, int64(2), v.Findings[1].Record)
	assert.Equal(t, "part of listed secret 2 (7 characters)", v.Findings[1].What, "a surviving surname is found")
	assert.NotContains(t, v.Findings[1].Sample, "ramivop", "the finding does not print it")
}

func TestVerifyFailsClosedOnARecordItCannotRead(t *testing.T) {
	v := NewVerifier(nil)
	v.Check(&trace.Route{Op: trace.RouteAdd, Path: "/user/x/", Data: json.RawMessage(`{"user":`)})
	require.Len(t, v.Findings, 1)
	assert.Equal(t, "could not be checked", v.Findings[0].What)
}

func TestAUsersOwnPathIsNotTakenForTheBaseURL(t *testing.T) {
	a := anonWith(t, DefaultRules())
	u := a.User("alice")
	// A folder the user named "hub" with "api" in it says nothing of the hub.
	got, _ := a.Target("/user/alice/files/hub/api/notes.txt")
	assert.Equal(t, "/user/"+u+"/files/hub/api/"+a.segment("notes.txt"), got)
	got, user := a.Target("/user/alice/files/data.csv")
	assert.Equal(t, "/user/"+u+"/files/"+a.segment("data.csv"), got)
	assert.Equal(t, u, user)
	// The routes API says where users live, over a guess from requests.
	a.Record(&trace.HTTP{Req: trace.Request{Method: "GET", Target: "/guess/hub/login"}})
	a.Record(&trace.Route{Op: trace.RouteAdd, Path: "/jhub/user/bob/"})
	got, _ = a.Target("/guess/hub/login")
	assert.Equal(t, "/"+a.segment("guess")+"/hub/login", got)
	got, user = a.Target("/jhub/user/bob/tree")
	assert.Equal(t, "/"+a.segment("jhub")+"/user/"+a.User("bob")+"/tree", got)
	assert.Equal(t, a.User("bob"), user)
}

// A listed address is looked for whole: its octets and port are numbers a
// trace keeps (a pseudonymized host keeps its port), not parts of a name.
func TestVerifyLooksForAddressesWhole(t *testing.T) {
	v := NewVerifier([]string{"127.0.0.1:38291", "10.1.2.3"})
	v.Check(&trace.Route{Op: trace.RouteAdd, Path: "/user/u-1a2b3c4d/", Target: "http://h-e8332941:38291"})
	assert.Empty(t, v.Findings, "the pseudonym's last digit and the kept port are no leak")
	v.Check(&trace.Route{Op: trace.RouteAdd, Path: "/user/u-1a2b3c4d/", Target: "http://127.0.0.1:38291"})
	v.Check(&trace.HTTP{Req: trace.Request{Method: "GET", Target: "/hub/api?ip=10.1.2.3"}})
	require.Len(t, v.Findings, 2, "%v", v.Findings)
	assert.Equal(t, "listed secret 1", v.Findings[0].What)
	assert.Equal(t, "listed secret 2", v.Findings[1].What)
}
