// Package anonymize turns captured records into records that are safe to
// keep: users become stable pseudonyms (keyed HMAC-SHA256; the key never
// leaves the process), secrets are removed, and bodies and WebSocket
// payloads keep their size and Jupyter message structure but not their
// content. It works on trace records before they reach a Writer, so nothing
// raw ever reaches the disk. Verify (verify.go) checks a finished trace.
package anonymize

import (
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/hubreplay/hubreplay/trace"
)

// Scheme names these rules in trace headers; it changes when the same key
// would give different pseudonyms.
const Scheme = "hmac-sha256/v2"

// Redacted replaces a value that is removed but whose presence matters.
const Redacted = "REDACTED"

// MinKeyBytes is the shortest key accepted.
const MinKeyBytes = 16

// Anonymizer applies Rules with one key. It learns the hub's layout (base
// URL, subdomain host, user names) from the records it sees, so records
// must reach it in the order they are written. It is not safe for
// concurrent use.
type Anonymizer struct {
	mac                      hash.Hash
	rules                    Rules
	keepHeaders, dropHeaders matcher
	keepQuery, dropQuery     matcher
	keepWords                matcher
	sum                      []byte

	base          []string // the base URL's segments, decoded
	baseKnown     bool     // given, or learned
	baseGiven     bool     // by the operator: never learned over
	baseFromRoute bool     // learned from the routes API: requests do not overrule it
	domain        string   // subdomain_host, given or learned
	users         map[string]bool
}

// New returns an Anonymizer keyed with key.
func New(key []byte, r Rules) (*Anonymizer, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("anonymization key is %d bytes; it needs at least %d", len(key), MinKeyBytes)
	}
	if r.Host == "" {
		r.Host = DefaultRules().Host
	}
	a := &Anonymizer{
		mac:         hmac.New(sha256.New, key),
		rules:       r,
		keepHeaders: newMatcher(r.KeepHeaders),
		dropHeaders: newMatcher(r.DropHeaders),
		keepQuery:   newMatcher(r.KeepQuery),
		dropQuery:   newMatcher(r.DropQuery),
		keepWords:   newMatcher(r.KeepWords),
		domain:      normDomain(r.SubdomainHost),
		users:       map[string]bool{},
	}
	if r.BaseURL != "" {
		_, dec := segs(normBaseURL(r.BaseURL))
		a.setBase(dec[1:max(len(dec)-1, 1)])
	}
	return a, nil
}

// RandomKey returns a fresh key: pseudonyms are then stable within one
// capture and unlinkable across captures.
func RandomKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails on Linux
	return k
}

// ReadKeyFile reads a key kept by the operator, so that the same user gets
// the same pseudonym in several captures.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read anonymization key: %w", err)
	}
	k := []byte(strings.TrimSpace(string(b)))
	if len(k) < MinKeyBytes {
		return nil, fmt.Errorf("anonymization key %s has %d bytes; it needs at least %d (e.g. head -c 32 /dev/urandom | base64 > %s)", path, len(k), MinKeyBytes, path)
	}
	return k, nil
}

// pseudo is prefix + the first n hex digits of HMAC(kind, s). kind keeps
// a user named like a file from getting the file's pseudonym.
func (a *Anonymizer) pseudo(prefix, kind, s string, n int) string {
	a.mac.Reset()
	a.mac.Write([]byte(kind))
	a.mac.Write([]byte{0})
	a.mac.Write([]byte(s))
	a.sum = a.mac.Sum(a.sum[:0])
	return prefix + hex.EncodeToString(a.sum)[:n]
}

// JSON anonymizes a JSON document (the proxy API's route data): "user"
// becomes the user's pseudonym, "server_name" the server's, times,
// numbers and booleans stay, other strings and unknown keys get
// pseudonyms. Anything that is not JSON is dropped.
func (a *Anonymizer) JSON(b []byte) json.RawMessage {
	var v any
	if len(b) == 0 || json.Unmarshal(b, &v) != nil {
		return nil
	}
	out, err := json.Marshal(a.jsonValue("", v))
	if err != nil {
		return nil
	}
	return out
}

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:?\d\d)?$`)

func (a *Anonymizer) jsonValue(key string, v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if !jsonKeys[k] {
				k = a.pseudo("q-", "key", k, 8)
			}
			out[k] = a.jsonValue(k, x)
		}
		return out
	case []any:
		for i, x := range v {
			v[i] = a.jsonValue(key, x)
		}
		return v
	case string:
		switch {
		case key == "user" || key == "username" || key == "name" && v != "":
			return a.User(v)
		case key == "server_name":
			return a.Server(v)
		case timeRE.MatchString(v):
			return v
		}
		return a.value(v)
	}
	return v // numbers, booleans, null
}

// Record anonymizes one record in place.
func (a *Anonymizer) Record(r trace.Record) {
	switch r := r.(type) {
	case *trace.ConnOpen:
		r.Client = a.Addr('c', r.Client)
		r.Server = a.Addr('s', r.Server)
	case *trace.HTTP:
		a.http(r)
	case *trace.WSFrame:
		a.frame(r, nil)
	case *trace.Route:
		a.route(r)
	}
}

func (a *Anonymizer) http(r *trace.HTTP) {
	// The user the target names, or whose subdomain the request is for.
	path, _, _ := strings.Cut(r.Req.Target, "?")
	if path != "" && path[0] == '/' {
		_, dec := segs(path)
		if host, ok := trace.HeaderValue(r.Req.Headers, "Host"); ok {
			if u := userAt(dec, 1+a.baseLen(dec)); u > 0 {
				a.learnDomain(host, dec[u])
			}
		}
	}
	var user string
	r.Req.Method = method(r.Req.Method)
	r.Req.Proto = proto(r.Req.Proto)
	r.Req.Target, user = a.Target(r.Req.Target)
	var hostUser string
	r.Req.Headers, hostUser = a.headers(r.Req.Headers)
	r.User = cmp.Or(user, hostUser)
	r.Req.Body, r.Req.BodyForm = nil, trace.FormNone
	if r.Resp != nil {
		r.Resp.Headers, _ = a.headers(r.Resp.Headers)
		r.Resp.Body, r.Resp.BodyForm = nil, trace.FormNone
		r.Resp.Proto = proto(r.Resp.Proto)
		if r.Resp.Reason != "" {
			r.Resp.Reason = http.StatusText(r.Resp.Status)
		}
	}
}

// route anonymizes a route event. A route of CHP's host routing starts
// with the host (/alice.hub.example/user/alice/).
func (a *Anonymizer) route(r *trace.Route) {
	_, dec := segs(r.Path)
	hostSeg := ""
	if len(dec) > 2 && strings.Contains(dec[1], ".") && !strings.Contains(dec[1], "..") {
		if u := userAt(dec, 2); u > 0 {
			a.learnDomain(dec[1], dec[u])
		}
		if _, ok := a.userHost(dec[1]); ok || a.domain != "" && strings.EqualFold(stripPort(dec[1]), a.domain) {
			hostSeg = dec[1]
		}
	}
	rest := r.Path
	if hostSeg != "" {
		rest = r.Path[strings.Index(r.Path[1:], "/")+1:]
		_, dec = segs(rest)
	}
	a.learnBase(dec, true)
	path, user := a.Path(rest)
	if hostSeg != "" {
		var hu string
		hostSeg, hu = a.hubHost(hostSeg, a.host)
		path, user = "/"+hostSeg+path, cmp.Or(user, hu)
	}
	r.Path = path
	if r.User != "" {
		r.User = a.User(r.User)
	} else {
		r.User = user
	}
	if r.Target != "" {
		r.Target = a.URL(r.Target)
	}
	r.Data = a.JSON(r.Data)
}

// method keeps a known HTTP method; any other becomes a pseudonym-free
// stand-in, so that a replay still sends a method nobody knows.
func method(m string) string {
	if methods[m] {
		return m
	}
	if m == "" {
		return m
	}
	return "X-UNKNOWN"
}

// proto keeps one of the HTTP versions; text after it goes.
func proto(p string) string {
	for _, v := range protos {
		if p == v || strings.HasPrefix(p, v+" ") {
			return v
		}
	}
	return ""
}
