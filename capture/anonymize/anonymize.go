// Package anonymize turns captured records into records that are safe to
// keep: users become stable pseudonyms (keyed HMAC-SHA256; the key never
// leaves the process), secrets are removed, and bodies and WebSocket
// payloads keep their size and Jupyter message structure but not their
// content. It works on trace records before they reach a Writer, so nothing
// raw ever reaches the disk. Verify (verify.go) checks a finished trace.
package anonymize

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/hubreplay/hubreplay/trace"
)

// Scheme names these rules in trace headers; it changes when the same key
// would give different pseudonyms.
const Scheme = "hmac-sha256/v1"

// Redacted replaces a value that is removed but whose presence matters.
const Redacted = "REDACTED"

// MinKeyBytes is the shortest key accepted.
const MinKeyBytes = 16

// Anonymizer applies Rules with one key. It is not safe for concurrent use.
type Anonymizer struct {
	mac                             hash.Hash
	rules                           Rules
	keepHeaders, dropHeaders        matcher
	keepQuery, dropQuery, keepWords matcher
	sum                             []byte
}

// New returns an Anonymizer keyed with key.
func New(key []byte, r Rules) (*Anonymizer, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("anonymization key is %d bytes; it needs at least %d", len(key), MinKeyBytes)
	}
	if r.Host == "" {
		r.Host = DefaultRules().Host
	}
	return &Anonymizer{
		mac:         hmac.New(sha256.New, key),
		rules:       r,
		keepHeaders: newMatcher(r.KeepHeaders),
		dropHeaders: newMatcher(r.DropHeaders),
		keepQuery:   newMatcher(r.KeepQuery),
		dropQuery:   newMatcher(r.DropQuery),
		keepWords:   newMatcher(r.KeepWords),
	}, nil
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

// User returns the pseudonym of a user name.
func (a *Anonymizer) User(name string) string {
	if name == "" {
		return ""
	}
	return a.pseudo("u-", "user", name, 8)
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// id pseudonymizes an identifier (kernel, session, terminal) keeping its
// shape: UUIDs stay UUID-shaped so that URLs and messages still match.
func (a *Anonymizer) id(s string) string {
	h := a.pseudo("", "id", strings.ToLower(strings.ReplaceAll(s, "-", "")), 32)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

var extRE = regexp.MustCompile(`\.[A-Za-z0-9]{1,8}$`)

// segment pseudonymizes one path segment (already unescaped).
func (a *Anonymizer) segment(s string) string {
	switch {
	case s == "" || a.keepWords.has(s) || isDigits(s) && !LooksSecret(s):
		return s
	case uuidRE.MatchString(s):
		return a.id(s)
	}
	return a.pseudo("p-", "path", s, 8) + extRE.FindString(s)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// userBefore are the segments after which a path names a user.
var userBefore = map[string]bool{"user": true, "users": true, "spawn": true, "spawn-pending": true}

// Path anonymizes a URL path and returns the pseudonym of the user it
// names (/user/NAME/…, /hub/api/users/NAME, CHP's /api/routes/user/NAME).
func (a *Anonymizer) Path(p string) (string, string) {
	if p == "" || p == "/" || p == "*" {
		return p, ""
	}
	segs := strings.Split(p, "/")
	user := ""
	for i := 0; i < len(segs); i++ {
		raw := segs[i]
		s, err := url.PathUnescape(raw)
		if err != nil {
			s = raw
		}
		if i > 0 && userBefore[segs[i-1]] && s != "" && (i == 2 || segs[1] == "hub" || segs[1] == "api") {
			// /user/NAME at the root; /hub/user/NAME, /hub/api/users/NAME,
			// /hub/spawn/NAME; the proxy API's /api/routes/user/NAME.
			segs[i] = a.User(s)
			if user == "" {
				user = segs[i]
			}
			// A user server's own static assets are not user data.
			if rest := "/" + strings.Join(segs[i+1:], "/"); a.static(rest) {
				return strings.Join(segs[:i+1], "/") + rest, user
			}
			continue
		}
		if i == 1 && a.static(p) {
			return p, user
		}
		segs[i] = url.PathEscape(a.segment(s))
	}
	return strings.Join(segs, "/"), user
}

// static reports whether p is a bundled asset's path, kept as it is. A
// path with anything secret-shaped in it is not kept, whatever its prefix.
func (a *Anonymizer) static(p string) bool {
	if LooksSecret(p) {
		return false
	}
	for _, pre := range a.rules.StaticPrefixes {
		if strings.HasPrefix(p, pre) && !strings.Contains(p, "..") {
			return true
		}
	}
	return false
}

// Target anonymizes a request target (path and query) and returns the
// pseudonym of the user it names.
func (a *Anonymizer) Target(t string) (string, string) {
	if strings.Contains(t, "://") {
		return a.URL(t), ""
	}
	path, query, hasQuery := strings.Cut(t, "?")
	p, user := a.Path(path)
	if !hasQuery {
		return p, user
	}
	return p + "?" + a.Query(query), user
}

// Query anonymizes a query string: dropped keys go, kept keys stay, every
// other value gets a pseudonym (paths and ids keep their shape).
func (a *Anonymizer) Query(q string) string {
	var out []string
	for kv := range strings.SplitSeq(q, "&") {
		k, v, hasV := strings.Cut(kv, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if k != name || a.key(name) != name {
			k = url.QueryEscape(a.key(name))
		}
		switch {
		case a.dropQuery.has(name):
			continue
		case !hasV:
			out = append(out, k)
		case a.keepQuery.has(name) && !LooksSecret(v):
			out = append(out, k+"="+v)
		default:
			val, err := url.QueryUnescape(v)
			if err != nil {
				val = v
			}
			out = append(out, k+"="+url.QueryEscape(a.value(val)))
		}
	}
	return strings.Join(out, "&")
}

// key keeps a query or JSON key that is a short plain word; any other may
// itself be the secret, and gets a pseudonym.
func (a *Anonymizer) key(name string) string {
	if len(name) <= 24 && wordRE.MatchString(name) && !LooksSecret(name) {
		return name
	}
	return a.pseudo("q-", "value", name, 8)
}

// value pseudonymizes a free-form value, keeping numbers, and the shape of
// ids and paths.
func (a *Anonymizer) value(v string) string {
	switch {
	case v == "" || isDigits(v) && !LooksSecret(v) || v == "true" || v == "false":
		return v
	case uuidRE.MatchString(v):
		return a.id(v)
	case strings.HasPrefix(v, "/") || strings.Contains(v, "://"):
		t, _ := a.Target(v)
		return t
	}
	return a.pseudo("q-", "value", v, 8)
}

// URL anonymizes an absolute or relative URL: the host becomes the rules'
// host, the path and query are anonymized as a target.
func (a *Anonymizer) URL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		t, _ := a.Target(u)
		return t
	}
	if !schemes[strings.ToLower(scheme)] {
		// Not a URL we know: every piece of it becomes a pseudonym.
		t, _ := a.Path(strings.ReplaceAll(u, "?", "/"))
		return t
	}
	hostport, path := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hostport, path = rest[:i], rest[i:]
	}
	host := a.rules.Host
	if h, port, err := net.SplitHostPort(hostport); err == nil && h != "" && len(port) <= 5 && isDigits(port) {
		host = a.host(h) + ":" + port
	} else if hostport != "" {
		host = a.host(hostport)
	}
	if path != "" && path[0] == '?' {
		path = "/" + path
	}
	t, _ := a.Target(path)
	return scheme + "://" + host + t
}

// schemes are the URL schemes kept; anything else is not a URL to us.
var schemes = map[string]bool{"http": true, "https": true, "ws": true, "wss": true}

// host replaces a host name or address. Addresses (a user server's pod IP)
// and names (kubespawner's jupyter-NAME) both get a pseudonym.
func (a *Anonymizer) host(h string) string {
	if h == "localhost" {
		return h
	}
	return a.pseudo("h-", "host", strings.ToLower(h), 8)
}

// Addr anonymizes "ip:port" as "c-…:port" (side 'c') or "s-…:port".
func (a *Anonymizer) Addr(side byte, hostport string) string {
	h, port, err := net.SplitHostPort(hostport)
	if err != nil {
		h, port = hostport, ""
	}
	p := a.pseudo(string(side)+"-", "addr", h, 8)
	if port == "" || len(port) > 5 || !isDigits(port) {
		return p
	}
	return p + ":" + port
}

// Headers anonymizes header fields; the result is a new slice.
func (a *Anonymizer) Headers(h []trace.Field) []trace.Field {
	out := make([]trace.Field, 0, len(h))
	for _, f := range h {
		name, v := f[0], f[1]
		if a.dropHeaders.has(name) {
			continue
		}
		switch strings.ToLower(name) {
		case "cookie":
			v = a.cookies(v)
		case "set-cookie":
			v = a.setCookie(v)
		case "authorization", "proxy-authorization":
			scheme, _, _ := strings.Cut(v, " ")
			if len(scheme) > 20 || LooksSecret(scheme) {
				scheme = ""
			}
			v = strings.TrimSpace(scheme + " " + Redacted)
		case "host", ":authority":
			v = a.rules.Host
		case "origin":
			scheme, _, _ := strings.Cut(v, "://")
			if !schemes[strings.ToLower(scheme)] {
				scheme = "https"
			}
			v = scheme + "://" + a.rules.Host
		case "referer", "location", "content-location":
			v = a.URL(v)
		case "etag", "if-none-match", "if-match":
			v = a.pseudo("\"e-", "etag", v, 12) + "\""
		case "user-agent":
			v = a.pseudo("ua-", "ua", v, 8)
		case "sec-websocket-protocol":
			v = a.protocols(v)
		default:
			if !a.keepHeaders.has(name) || LooksSecret(v) {
				v = Redacted
			}
		}
		out = append(out, trace.Field{name, v})
	}
	return out
}

var wordRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,63}$`)

// protocols keeps WebSocket subprotocol names (Jupyter's
// v1.kernel.websocket.jupyter.org) and replaces anything else: some
// clients pass a token as a subprotocol.
func (a *Anonymizer) protocols(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !wordRE.MatchString(p) || LooksSecret(p) {
			p = Redacted
		}
		parts[i] = p
	}
	return strings.Join(parts, ", ")
}

// cookieName keeps a cookie's name but the user in jupyterhub-user-NAME.
func (a *Anonymizer) cookieName(n string) string {
	if u, ok := strings.CutPrefix(n, "jupyterhub-user-"); ok {
		return "jupyterhub-user-" + a.User(u)
	}
	if !wordRE.MatchString(n) || LooksSecret(n) {
		return a.pseudo("k-", "cookie", n, 8)
	}
	return n
}

func (a *Anonymizer) cookies(v string) string {
	parts := strings.Split(v, ";")
	for i, c := range parts {
		name, _, _ := strings.Cut(strings.TrimSpace(c), "=")
		parts[i] = a.cookieName(name) + "=" + Redacted
	}
	return strings.Join(parts, "; ")
}

func (a *Anonymizer) setCookie(v string) string {
	parts := strings.Split(v, ";")
	name, _, _ := strings.Cut(strings.TrimSpace(parts[0]), "=")
	out := []string{a.cookieName(name) + "=" + Redacted}
	for _, attr := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(attr), "=")
		switch strings.ToLower(k) {
		case "path":
			p, _ := a.Path(val)
			out = append(out, k+"="+p)
		case "domain":
			out = append(out, k+"="+a.rules.Host)
		case "expires", "max-age", "samesite":
			if !LooksSecret(val) {
				out = append(out, strings.TrimSpace(attr))
			}
		case "httponly", "secure", "partitioned":
			out = append(out, k)
		}
	}
	return strings.Join(out, "; ")
}

// JSON anonymizes a JSON document (the proxy API's route data): "user"
// becomes a pseudonym, numbers and booleans stay, other strings get
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
			out[a.key(k)] = a.jsonValue(k, x)
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
		r.Req.Target, r.User = a.Target(r.Req.Target)
		r.Req.Headers = a.Headers(r.Req.Headers)
		r.Req.Body, r.Req.BodyForm = nil, trace.FormNone
		if r.Resp != nil {
			r.Resp.Headers = a.Headers(r.Resp.Headers)
			r.Resp.Body, r.Resp.BodyForm = nil, trace.FormNone
			if LooksSecret(r.Resp.Reason) || len(r.Resp.Reason) > 64 {
				r.Resp.Reason = ""
			}
		}
	case *trace.WSFrame:
		a.frame(r)
	case *trace.Route:
		path, user := a.Path(r.Path)
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
}
