package anonymize

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Rules say what is kept as it is. Everything else that can carry a secret
// or a name is replaced: the rules are allowlists, so a header, query key or
// path word nobody thought of is anonymized, not leaked.
type Rules struct {
	// KeepHeaders are header names whose values are harmless and kept.
	KeepHeaders []string `yaml:"keep_headers"`
	// DropHeaders are removed entirely (client addresses added by proxies).
	// A trailing * matches a prefix.
	DropHeaders []string `yaml:"drop_headers"`
	// KeepQuery are query parameters whose values are kept; others keep
	// their name and get a pseudonym, and DropQuery ones are removed.
	KeepQuery []string `yaml:"keep_query"`
	DropQuery []string `yaml:"drop_query"`
	// KeepWords are path segments kept verbatim (Jupyter's API words);
	// other segments become pseudonyms.
	KeepWords []string `yaml:"keep_words"`
	// StaticPrefixes are path prefixes (after /user/NAME/ or from the root)
	// under which the whole path is kept: bundled assets, not user files.
	StaticPrefixes []string `yaml:"static_prefixes"`
	// Host replaces the hub's host name in Host, Origin, Referer, Location.
	Host string `yaml:"host"`
	// BaseURL is c.JupyterHub.base_url (z2jh's hub.baseUrl), SubdomainHost
	// c.JupyterHub.subdomain_host: where user names stand. Either is learned
	// from the traffic (the routes API's paths) when not given.
	BaseURL       string `yaml:"base_url"`
	SubdomainHost string `yaml:"subdomain_host"`
}

// DefaultRules are safe for a JupyterHub behind CHP: names, tokens,
// cookies, files, code and addresses are all replaced.
func DefaultRules() Rules {
	return Rules{
		KeepHeaders: []string{
			"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Access-Control-Allow-Headers",
			"Access-Control-Allow-Methods", "Access-Control-Max-Age", "Age", "Cache-Control", "Connection",
			"Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "Date", "Expires",
			"Keep-Alive", "Last-Modified", "Pragma", "Server", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
			"Vary", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions",
			"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "X-Content-Type-Options",
			"X-Frame-Options", "X-Requested-With", "X-JupyterHub-Version", "Strict-Transport-Security",
			"If-Modified-Since", "Range", "Content-Range", "Expect", "Priority", "Upgrade-Insecure-Requests",
			"DNT", "Referrer-Policy",
		},
		DropHeaders: []string{"X-Forwarded-*", "X-Real-Ip", "Forwarded", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "X-Original-Forwarded-For", "Via"},
		KeepQuery:   []string{"content", "type", "format", "hash", "v", "_", "status", "include_stopped_servers", "offset", "limit", "kernel_name"},
		DropQuery:   []string{"token", "_xsrf", "access_token", "code", "state_token", "password"},
		KeepWords: []string{
			"hub", "user", "users", "api", "contents", "kernels", "kernelspecs", "sessions", "channels", "lab",
			"tree", "edit", "notebooks", "files", "view", "terminals", "terminal", "websocket", "static",
			"metrics", "nbconvert", "workspaces", "settings", "translations", "themes", "extensions", "events",
			"subscribe", "me", "status", "config", "login", "logout", "oauth_login", "oauth_callback", "oauth2",
			"authorize", "token", "tokens", "home", "spawn", "spawn-pending", "user-redirect", "health",
			"proxy", "routes", "servers", "server", "progress", "activity", "groups", "services", "info",
			"authorizations", "cookie", "shutdown", "admin", "checkpoints", "restart",
			"interrupt", "logo", "security", "csp-report", "nbextensions", "custom", "doc", "workspace",
			"lsp", "ws", "jupyterlab", "build", "listings", "resources", "error", "not_running", "accept-share",
			"share-codes", "shares", "scopes", "ping", "favicon.ico", "favicon.png", "robots.txt", "_chp_healthz",
			"yjs", "collaboration", "session", "fileid", "id", "documents",
		},
		StaticPrefixes: []string{
			"/static/", "/lab/static/", "/lab/extensions/", "/nbextensions/", "/custom/", "/lab/api/themes/",
			"/lab/api/translations", "/hub/static/", "/hub/logo", "/favicon.ico", "/robots.txt",
		},
		Host: "hub.example",
	}
}

// LoadRules reads a rules file (YAML or JSON) over the defaults: lists in
// the file replace the default lists of the same name.
func LoadRules(path string) (Rules, error) {
	r := DefaultRules()
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("read anonymization rules: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("anonymization rules %s: %w", path, err)
	}
	return r, nil
}

// matcher answers case-insensitive membership, with trailing-* prefixes.
type matcher struct {
	exact    map[string]bool
	prefixes []string
}

func newMatcher(names []string) matcher {
	m := matcher{exact: map[string]bool{}}
	for _, n := range names {
		n = strings.ToLower(n)
		if p, ok := strings.CutSuffix(n, "*"); ok {
			m.prefixes = append(m.prefixes, p)
		} else {
			m.exact[n] = true
		}
	}
	return m
}

func (m matcher) has(name string) bool {
	name = strings.ToLower(name)
	return m.exact[name] || slices.ContainsFunc(m.prefixes, func(p string) bool { return strings.HasPrefix(name, p) })
}
