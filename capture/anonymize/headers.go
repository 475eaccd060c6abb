package anonymize

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/hubreplay/hubreplay/trace"
)

// Headers anonymizes header fields; the result is a new slice.
func (a *Anonymizer) Headers(h []trace.Field) []trace.Field {
	out, _ := a.headers(h)
	return out
}

// headers anonymizes header fields and says whose subdomain the Host names.
func (a *Anonymizer) headers(h []trace.Field) ([]trace.Field, string) {
	out := make([]trace.Field, 0, len(h))
	user := ""
	for _, f := range h {
		name, v := f[0], f[1]
		if a.dropHeaders.has(name) {
			continue
		}
		lower := strings.ToLower(name)
		if !knownHeaders[lower] && !a.keepHeaders.has(name) {
			// A header nobody listed: its name may be the secret too.
			out = append(out, trace.Field{a.pseudo("X-Anon-", "header", lower, 8), Redacted})
			continue
		}
		switch lower {
		case "cookie":
			v = a.cookies(v)
		case "set-cookie":
			v = a.setCookie(v)
		case "authorization", "proxy-authorization":
			v = authorization(v)
		case "host", ":authority":
			v, user = a.hubHost(v, func(string) string { return a.rules.Host })
		case "origin":
			scheme, host, _ := strings.Cut(v, "://")
			if !schemes[strings.ToLower(scheme)] {
				scheme = "https"
			}
			host, _ = a.hubHost(host, func(string) string { return a.rules.Host })
			v = strings.ToLower(scheme) + "://" + host
		case "referer", "location", "content-location":
			v = a.URL(v)
		case "etag", "if-none-match", "if-match":
			v = a.pseudo("\"e-", "etag", v, 12) + "\""
		case "user-agent":
			v = a.pseudo("ua-", "ua", v, 8)
		case "sec-websocket-protocol":
			v = a.protocols(v)
		default:
			if !a.keepHeaders.has(name) || !keptValue(v) {
				v = Redacted
			}
		}
		out = append(out, trace.Field{name, v})
	}
	return out, user
}

// keptValueRE is what a kept header's value may be: printable ASCII of a
// sane length (formats, dates, cache rules, versions).
var keptValueRE = regexp.MustCompile(`^[\x20-\x7e]{0,256}$`)

func keptValue(v string) bool { return keptValueRE.MatchString(v) && !LooksSecret(v) }

// authorization keeps a known scheme, never the credentials.
func authorization(v string) string {
	scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
	if authSchemes[strings.ToLower(scheme)] {
		return scheme + " " + Redacted
	}
	return Redacted
}

// protocols keeps the WebSocket subprotocols on the list (Jupyter's
// v1.kernel.websocket.jupyter.org) and gives any other a pseudonym: some
// clients pass a token as a subprotocol.
func (a *Anonymizer) protocols(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !subprotocols[p] {
			p = a.pseudo("sp-", "subprotocol", p, 8)
		}
		parts[i] = p
	}
	return strings.Join(parts, ", ")
}

// cookieName keeps JupyterHub's own cookie names, gives the user and
// server in jupyterhub-user-NAME[-SERVER][-oauth-state] their pseudonyms,
// and any other name a pseudonym whole (it may hold a user's name).
func (a *Anonymizer) cookieName(n string) string {
	switch {
	case hubCookies[n]:
		return n
	case strings.HasPrefix(n, "jupyterhub-user-") && len(n) > len("jupyterhub-user-"):
		return "jupyterhub-user-" + a.client(n[len("jupyterhub-user-"):])
	}
	return a.pseudo("k-", "cookie", n, 8)
}

func (a *Anonymizer) cookies(v string) string {
	parts := strings.Split(v, ";")
	for i, c := range parts {
		name, _, _ := strings.Cut(strings.TrimSpace(c), "=")
		parts[i] = a.cookieName(name) + "=" + Redacted
	}
	return strings.Join(parts, "; ")
}

var (
	maxAgeRE   = regexp.MustCompile(`^-?\d{1,10}$`)
	sameSiteRE = regexp.MustCompile(`^(?i:lax|strict|none)$`)
	httpDateRE = regexp.MustCompile(`^[A-Za-z]{3}, \d\d[ -][A-Za-z]{3}[ -]\d{2,4} \d\d:\d\d:\d\d GMT$`)
)

func (a *Anonymizer) setCookie(v string) string {
	parts := strings.Split(v, ";")
	name, _, _ := strings.Cut(strings.TrimSpace(parts[0]), "=")
	out := []string{a.cookieName(name) + "=" + Redacted}
	for _, attr := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(attr), "=")
		switch strings.ToLower(k) {
		case "path":
			p, _ := a.Path(val)
			out = append(out, "Path="+p)
		case "domain":
			d, _ := a.hubHost(strings.TrimPrefix(val, "."), func(string) string { return a.rules.Host })
			out = append(out, "Domain="+d)
		case "expires":
			if httpDateRE.MatchString(val) {
				out = append(out, "expires="+val)
			}
		case "max-age":
			if maxAgeRE.MatchString(val) {
				out = append(out, "Max-Age="+val)
			}
		case "samesite":
			if sameSiteRE.MatchString(val) {
				out = append(out, "SameSite="+val)
			}
		case "httponly":
			out = append(out, "HttpOnly")
		case "secure":
			out = append(out, "Secure")
		case "partitioned":
			out = append(out, "Partitioned")
		}
	}
	return strings.Join(out, "; ")
}

// unescapeOr unescapes a path piece, or leaves it as it is.
func unescapeOr(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}
