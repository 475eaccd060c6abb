package anonymize

import (
	"net"
	"net/url"
	"regexp"
	"strings"
)

// User returns the pseudonym of a user name (unescaped). Names are
// case-folded first, as JupyterHub normalises them, so that a name typed
// "Ada.Lovelace" at login and kept "ada.lovelace" get one pseudonym.
func (a *Anonymizer) User(name string) string {
	if name == "" {
		return ""
	}
	a.seeUser(name)
	return a.pseudo("u-", "user", canonUser(name), 8)
}

// Server returns the pseudonym of a named server's name (unescaped), the
// same in paths, route data and cookie names.
func (a *Anonymizer) Server(name string) string {
	if name == "" {
		return ""
	}
	return a.pseudo("srv-", "server", name, 8)
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// id pseudonymizes an identifier (kernel, session, terminal) keeping its
// shape: UUIDs stay UUID-shaped so that URLs and messages still match.
func (a *Anonymizer) id(s string) string {
	h := a.pseudo("", "id", strings.ToLower(strings.ReplaceAll(s, "-", "")), 32)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// maxDigits is the longest run of digits kept as it is: ids, counts,
// ports. Longer ones (student numbers, phone numbers) get pseudonyms.
const maxDigits = 6

// ext is a name's extension when it is on the short list, lower-cased.
func ext(s string) string {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return ""
	}
	e := strings.ToLower(s[i+1:])
	if !extensions[e] {
		return ""
	}
	return "." + e
}

// segment pseudonymizes one path segment (already unescaped): Jupyter's
// API words stay, ids keep their shape, anything else becomes p-<hex> with
// at most an extension from the short list.
func (a *Anonymizer) segment(s string) string {
	switch {
	case s == "" || a.keepWords.has(s) || isDigits(s) && len(s) <= maxDigits:
		return s
	case uuidRE.MatchString(s):
		return a.id(s)
	}
	return a.pseudo("p-", "path", s, 8) + ext(s)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Path anonymizes a URL path and returns the pseudonym of the user it
// names. Users are found wherever JupyterHub puts them: /user/NAME under
// the base URL, /hub/user/NAME, /hub/api/users/NAME, /hub/spawn/NAME,
// CHP's /api/routes/user/NAME; a named server's name after them gets the
// server's pseudonym.
func (a *Anonymizer) Path(p string) (string, string) {
	if p == "" || p == "/" || p == "*" {
		return p, ""
	}
	if p[0] != '/' {
		return a.pseudo("p-", "path", p, 8), ""
	}
	raw, dec := segs(p)
	a.learnBase(dec, false)
	out := make([]string, len(raw))
	start := 1 + a.baseLen(dec)
	for i := 1; i < start; i++ {
		out[i] = url.PathEscape(a.segment(dec[i]))
	}
	u := userAt(dec, start)
	if u < 0 {
		if a.static(raw[start:]) {
			copy(out[start:], raw[start:])
			return strings.Join(out, "/"), ""
		}
		a.rest(out, dec, start)
		return strings.Join(out, "/"), ""
	}
	a.rest(out, dec[:u], start)
	user := a.User(dec[u])
	out[u] = user
	next := u + 1
	switch {
	case dec[u-1] == "users" && next+1 < len(dec) && dec[next] == "servers":
		out[next] = "servers"
		out[next+1] = url.PathEscape(a.Server(dec[next+1]))
		next += 2
	case dec[u-1] != "users" && next < len(dec) && dec[next] != "" && !a.keepWords.has(dec[next]):
		// /user/NAME/SERVER/…, /hub/spawn/NAME/SERVER
		out[next] = url.PathEscape(a.Server(dec[next]))
		next++
	}
	if next < len(dec) {
		// A user server's own static assets are not user data.
		if a.static(raw[next:]) {
			copy(out[next:], raw[next:])
		} else {
			a.rest(out, dec, next)
		}
	}
	return strings.Join(out, "/"), user
}

// rest pseudonymizes dec[from:] into out.
func (a *Anonymizer) rest(out, dec []string, from int) {
	for i := from; i < len(dec); i++ {
		out[i] = url.PathEscape(a.segment(dec[i]))
	}
}

// static reports whether the segments are a bundled asset's path, kept as
// it is: under one of the rules' prefixes, every segment a plain name, the
// last one an asset (or one of Jupyter's words, like logo). It is given the
// segments as they are on the wire, since that is what is kept: an escaped
// segment (%6a3f…) is no plain name, whatever it decodes to.
func (a *Anonymizer) static(s []string) bool {
	if len(s) < 2 {
		return false
	}
	p := "/" + strings.Join(s, "/")
	prefixed := false
	for _, pre := range a.rules.StaticPrefixes {
		if strings.HasPrefix(p, pre) {
			prefixed = true
			break
		}
	}
	if !prefixed {
		return false
	}
	for _, seg := range s {
		if !assetSegRE.MatchString(seg) || strings.Contains(seg, "..") || LooksSecret(seg) {
			return false
		}
	}
	last := s[len(s)-1]
	i := strings.LastIndexByte(last, '.')
	return i >= 0 && assetExtensions[strings.ToLower(last[i+1:])] || a.keepWords.has(last)
}

// Target anonymizes a request target (path and query) and returns the
// pseudonym of the user it names.
func (a *Anonymizer) Target(t string) (string, string) {
	switch {
	case t == "" || t == "*":
		return t, ""
	case t[0] == '/':
		path, query, hasQuery := strings.Cut(t, "?")
		p, user := a.Path(path)
		if !hasQuery {
			return p, user
		}
		return p + "?" + a.Query(query), user
	case strings.Contains(t, "://"):
		// absolute-form, as sent to a forward proxy
		return a.URL(t), ""
	}
	return a.pseudo("p-", "path", t, 8), ""
}

// Query anonymizes a query string: dropped keys go, known keys stay (any
// other key gets a pseudonym), kept keys keep plain values, every other
// value gets a pseudonym (paths and ids keep their shape).
func (a *Anonymizer) Query(q string) string {
	var out []string
	for kv := range strings.SplitSeq(q, "&") {
		if kv == "" {
			continue
		}
		k, v, hasV := strings.Cut(kv, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if a.dropQuery.has(name) {
			continue
		}
		k = url.QueryEscape(a.queryKey(name))
		switch {
		case !hasV:
			out = append(out, k)
		case a.keepQuery.has(name) && plainValue(v):
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

// plainValue tells whether a kept query key's value may stay as it is: a
// short word or number, or a longer version or timestamp (digits and
// separators). Anything longer gets a pseudonym whatever it looks like:
// whether a string "looks random" is a guess, and about one random
// 32-character token in two hundred happens to look like a word to
// LooksSecret (no digit in it, or letters that repeat), so a guess must
// never be what keeps a value.
func plainValue(v string) bool {
	if len(v) <= maxPlain {
		return plainRE.MatchString(v) && !LooksSecret(v)
	}
	return len(v) <= 64 && numericRE.MatchString(v)
}

// maxPlain is the longest value kept for its shape alone.
const maxPlain = 16

var (
	plainRE   = regexp.MustCompile(`^[A-Za-z0-9._:-]*$`)
	numericRE = regexp.MustCompile(`^v?[0-9][0-9._:-]*$`)
)

func (a *Anonymizer) queryKey(name string) string {
	if queryKeys[name] || a.keepQuery.has(name) {
		return name
	}
	return a.pseudo("q-", "key", name, 8)
}

// value pseudonymizes a free-form value, keeping short numbers, and the
// shape of ids, paths and OAuth client ids.
func (a *Anonymizer) value(v string) string {
	switch {
	case v == "" || isDigits(v) && len(v) <= maxDigits || v == "true" || v == "false":
		return v
	case uuidRE.MatchString(v):
		return a.id(v)
	case strings.HasPrefix(v, "/") || strings.Contains(v, "://"):
		t, _ := a.Target(v)
		return t
	case strings.HasPrefix(v, "jupyterhub-user-"):
		return "jupyterhub-user-" + a.client(v[len("jupyterhub-user-"):])
	}
	return a.pseudo("q-", "value", v, 8)
}

// client pseudonymizes what follows jupyterhub-user- in an OAuth client id
// or cookie name: NAME, NAME-SERVER, either with -oauth-state (JupyterHub
// quotes NAME and SERVER). Known user names tell where NAME ends.
func (a *Anonymizer) client(rest string) string {
	suffix := ""
	if r, ok := strings.CutSuffix(rest, "-oauth-state"); ok {
		rest, suffix = r, "-oauth-state"
	}
	un := unescapeOr
	if !a.users[canonUser(un(rest))] {
		for i := len(rest) - 1; i > 0; i-- {
			if rest[i] == '-' && a.users[canonUser(un(rest[:i]))] {
				return a.User(un(rest[:i])) + "-" + a.Server(un(rest[i+1:])) + suffix
			}
		}
	}
	return a.User(un(rest)) + suffix
}

// URL anonymizes an absolute or relative URL: a host the hub serves
// becomes the rules' host (a user's subdomain the user's pseudonym under
// it), any other host a pseudonym; the path and query are anonymized as a
// target; user info and fragments are removed.
func (a *Anonymizer) URL(u string) string {
	u, _, _ = strings.Cut(u, "#")
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		if strings.HasPrefix(u, "/") {
			t, _ := a.Target(u)
			return t
		}
		// A relative reference: anonymized as a path, then made relative again.
		t, _ := a.Target("/" + u)
		return t[1:]
	}
	if !schemes[strings.ToLower(scheme)] {
		// Not a URL we know: no piece of it is kept.
		return a.pseudo("p-", "path", u, 8)
	}
	hostport, path := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hostport, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(hostport, '@'); i >= 0 {
		hostport = hostport[i+1:] // user:password@
	}
	host := a.rules.Host
	if hostport != "" {
		host, _ = a.hubHost(hostport, a.host)
	}
	if path != "" && path[0] == '?' {
		path = "/" + path
	}
	t, _ := a.Target(path)
	return strings.ToLower(scheme) + "://" + host + t
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
