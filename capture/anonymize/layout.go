package anonymize

import (
	"net"
	"strings"
	"unicode/utf8"
)

// Where a JupyterHub puts user names depends on its layout: under
// c.JupyterHub.base_url (z2jh's hub.baseUrl), and, with
// c.JupyterHub.subdomain_host, in host names too (alice.hub.example, CHP's
// host routing). The operator may say both (Rules.BaseURL,
// Rules.SubdomainHost); what is not said is learned from the traffic: the
// routes API's paths say where users live.

// normBaseURL makes "/jhub", "jhub/" and "/jhub/" the same: "/jhub/".
func normBaseURL(b string) string {
	b = strings.Trim(strings.TrimSpace(b), "/")
	if b == "" {
		return ""
	}
	return "/" + b + "/"
}

// normDomain takes subdomain_host as JupyterHub's config writes it
// ("https://hub.example.org:8443") and keeps the host name.
func normDomain(d string) string {
	d = strings.TrimSpace(d)
	if _, rest, ok := strings.Cut(d, "://"); ok {
		d = rest
	}
	d, _, _ = strings.Cut(d, "/")
	return strings.ToLower(stripPort(d))
}

func stripPort(h string) string {
	if host, port, err := net.SplitHostPort(h); err == nil && isDigits(port) {
		return host
	}
	return h
}

// segs splits a path into its decoded segments; the first is always "".
func segs(p string) (raw, dec []string) {
	raw = strings.Split(p, "/")
	dec = make([]string, len(raw))
	for i, s := range raw {
		dec[i] = unescapeOr(s)
	}
	return raw, dec
}

// canonUser is a user name as JupyterHub keeps it: its default
// Authenticator.normalize_username lower-cases names, and URLs, cookie
// names and host names carry it escaped (callers unescape first).
func canonUser(name string) string { return strings.ToLower(name) }

// decodeLabel undoes the escaping of a user's host label: JupyterHub's
// User.domain is quote(name).replace('%', '_').lower(). A "_hh" that would
// decode to a character quote leaves alone is a real underscore.
func decodeLabel(l string) string {
	if !strings.Contains(l, "_") {
		return l
	}
	var b []byte
	for i := 0; i < len(l); i++ {
		if l[i] == '_' && i+2 < len(l) && isHex(l[i+1]) && isHex(l[i+2]) {
			c := unhex(l[i+1])<<4 | unhex(l[i+2])
			if !unreserved(c) {
				b = append(b, c)
				i += 2
				continue
			}
		}
		b = append(b, l[i])
	}
	if !utf8.Valid(b) {
		return l
	}
	return string(b)
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// unreserved are the bytes Python's quote never escapes.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '~' || c == '/'
}

// userAt finds the segment that names a user: the one after the first
// "user", "users", "spawn" or "spawn-pending" from start on. Any prefix
// may stand before it (a base URL nobody told us of); -1 if none.
func userAt(dec []string, start int) int {
	for i := start; i+1 < len(dec); i++ {
		if userBefore[dec[i]] && dec[i+1] != "" {
			return i + 1
		}
	}
	return -1
}

// userBefore are the segments after which a path names a user.
var userBefore = map[string]bool{"user": true, "users": true, "spawn": true, "spawn-pending": true}

// hubWords follow the hub's own "hub" segment; "/PREFIX/hub/WORD" says the
// base URL is /PREFIX/.
var hubWords = map[string]bool{"api": true, "login": true, "logout": true, "spawn": true, "spawn-pending": true, "home": true,
	"static": true, "user": true, "user-redirect": true, "oauth_login": true, "oauth_callback": true, "token": true,
	"admin": true, "health": true, "error": true, "accept-share": true, "metrics": true, "logo": true}

// learnBase takes the base URL from a path when nobody gave one: a route
// to /PREFIX/user/NAME/ (the hub's own word for it), or, until a route
// says, a request for /PREFIX/hub/WORD whose prefix names no user.
func (a *Anonymizer) learnBase(dec []string, route bool) {
	if a.baseGiven || a.baseFromRoute || a.baseKnown && !route {
		return
	}
	for i := 1; i+1 < len(dec); i++ {
		if route && dec[i] == "user" && dec[i+1] != "" {
			a.setBase(dec[1:i])
			a.baseFromRoute = true
			return
		}
		if userBefore[dec[i]] || i > 4 {
			return // a user's own path, not the hub's
		}
		if !route && dec[i] == "hub" && hubWords[dec[i+1]] {
			a.setBase(dec[1:i])
			return
		}
	}
}

func (a *Anonymizer) setBase(s []string) {
	a.baseKnown = true
	a.base = append([]string(nil), s...)
}

// baseLen is how many segments after the leading "" are the base URL, when
// the path is under it.
func (a *Anonymizer) baseLen(dec []string) int {
	if len(a.base) == 0 || len(dec) <= len(a.base) {
		return 0
	}
	for i, b := range a.base {
		if dec[i+1] != b {
			return 0
		}
	}
	return len(a.base)
}

// learnDomain takes subdomain_host from a host whose first label is the
// user the path names (a host route, or a request on a user's subdomain).
func (a *Anonymizer) learnDomain(host, user string) {
	if a.domain != "" || user == "" {
		return
	}
	host = strings.ToLower(stripPort(host))
	label, rest, ok := strings.Cut(host, ".")
	if ok && rest != "" && canonUser(decodeLabel(label)) == canonUser(user) {
		a.domain = rest
	}
}

// userHost tells whether h is a user's subdomain and whose.
func (a *Anonymizer) userHost(h string) (string, bool) {
	if a.domain == "" {
		return "", false
	}
	label, ok := strings.CutSuffix(strings.ToLower(stripPort(h)), "."+a.domain)
	if !ok || label == "" || strings.Contains(label, ".") {
		return "", false
	}
	return decodeLabel(label), true
}

// hubHost replaces a host the hub serves: a user's subdomain becomes the
// user's pseudonym under the rules' host, the hub's own host the rules'
// host. other is what any other host becomes.
func (a *Anonymizer) hubHost(h string, other func(string) string) (string, string) {
	host, port := h, ""
	if hh, p, err := net.SplitHostPort(h); err == nil && hh != "" {
		host, port = hh, p
	}
	var out, user string
	if name, ok := a.userHost(host); ok {
		user = a.User(name)
		out = user + "." + a.rules.Host
	} else if a.domain != "" && strings.EqualFold(host, a.domain) {
		out = a.rules.Host
	} else {
		out = other(host)
	}
	if port != "" && len(port) <= 5 && isDigits(port) {
		out += ":" + port
	}
	return out, user
}

// seeUser remembers a user name, so that cookie names that join a user and
// a server name can be split.
func (a *Anonymizer) seeUser(name string) {
	if name != "" && len(a.users) < maxUsers {
		a.users[canonUser(name)] = true
	}
}

// maxUsers bounds the names remembered; past it, splitting falls back to
// taking the whole cookie suffix as the user.
const maxUsers = 1 << 16
