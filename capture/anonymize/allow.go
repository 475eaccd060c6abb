package anonymize

import "regexp"

// The closed sets: a string that reaches a trace verbatim is one of these
// (or a number, a time, or a shape the rules in rules.go name). Anything
// else gets a pseudonym or is removed. README's threat model lists them.

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// methods are the HTTP methods kept; any other becomes a pseudonym token.
var methods = set("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH")

// protos are the protocol versions kept in request and status lines.
var protos = []string{"HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/2", "HTTP/0.9"}

// knownHeaders are header names kept as names (their values follow the
// rules: kept only for Rules.KeepHeaders, or handled field by field). A
// name outside this set and the rules' lists becomes X-Anon-<pseudonym>.
var knownHeaders = set("cookie", "set-cookie", "authorization", "proxy-authorization", "host", ":authority", "origin",
	"referer", "location", "content-location", "etag", "if-none-match", "if-match", "user-agent",
	"sec-websocket-protocol", "sec-websocket-key", "sec-websocket-accept", "x-xsrftoken", "x-csrftoken",
	"content-security-policy", "content-security-policy-report-only", "content-disposition", "link",
	"access-control-allow-origin", "access-control-allow-credentials", "access-control-expose-headers",
	"access-control-request-method", "access-control-request-headers", "sec-ch-ua", "sec-ch-ua-mobile",
	"sec-ch-ua-platform", "www-authenticate", "proxy-authenticate", "retry-after", "allow",
	"cross-origin-opener-policy", "cross-origin-embedder-policy", "cross-origin-resource-policy",
	"permissions-policy", "x-xss-protection", "if-unmodified-since", "if-range", "sec-purpose", "purpose",
	"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-real-ip", "forwarded",
	"via", "x-request-id", "traceparent", "tracestate", "content-md5", "digest", "warning", "x-powered-by")

// authSchemes are the Authorization schemes kept before REDACTED.
var authSchemes = set("basic", "bearer", "token", "digest", "negotiate", "ntlm")

// hubCookies are JupyterHub's cookie names with nothing of a user in them.
// jupyterhub-user-NAME[-SERVER][-oauth-state] keep their shape with
// pseudonyms; any other name gets one whole.
var hubCookies = set("_xsrf", "jupyterhub-hub-login", "jupyterhub-session-id", "jupyterhub-services",
	"jupyterhub-hub-login-oauth-state", "jupyterhub-oauth-state")

// subprotocols are the WebSocket subprotocols kept; some clients pass a
// token as one, so any other gets a pseudonym.
var subprotocols = set("v1.kernel.websocket.jupyter.org")

// extensions are the file extensions a path pseudonym keeps (lower-cased):
// enough to tell notebooks from data from assets, never a free-form tail.
var extensions = set("ipynb", "py", "r", "jl", "csv", "tsv", "txt", "md", "json", "yaml", "yml", "xml", "html",
	"htm", "js", "mjs", "css", "map", "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "pdf", "zip", "gz", "tar",
	"tgz", "bz2", "xz", "parquet", "h5", "hdf5", "nc", "xlsx", "xls", "docx", "pptx", "odt", "ods", "mp4", "mp3",
	"wav", "npy", "npz", "pkl", "sqlite", "db", "log", "sh", "tex", "bib", "ts", "woff", "woff2", "ttf", "otf",
	"eot", "wasm", "c", "cpp", "h", "java", "rs", "go", "m", "rmd", "qmd", "dat", "bin")

// assetExtensions end a static asset's path that is kept whole.
var assetExtensions = set("js", "mjs", "css", "map", "json", "woff", "woff2", "ttf", "otf", "eot", "svg", "png",
	"ico", "gif", "jpg", "jpeg", "webp", "wasm", "html", "txt")

// assetSegRE is what one segment of a kept static asset path looks like.
var assetSegRE = regexp.MustCompile(`^[@A-Za-z0-9_][A-Za-z0-9._~@+-]{0,127}$`)

// queryKeys are query parameter names kept as names (values follow
// Rules.KeepQuery); any other name gets a pseudonym.
var queryKeys = set("next", "redirect_uri", "client_id", "response_type", "state", "scope", "session_id",
	"path", "name", "kernel_name", "type", "content", "format", "hash", "v", "_", "status",
	"include_stopped_servers", "offset", "limit", "order", "sort", "all", "force", "include", "kind",
	"file", "filename", "copy_from", "server_name", "service", "user", "username", "reason", "cell_id",
	"token", "_xsrf", "access_token", "code", "state_token", "password", "fileId", "room", "doc", "ext",
	"stop_now", "remove", "timeout", "exclude", "accept", "error", "error_description", "prompt")

// jsonKeys are keys kept in route data (JupyterHub sends user, server_name,
// last_activity); any other key gets a pseudonym.
var jsonKeys = set("user", "username", "name", "server_name", "last_activity", "jupyterhub", "service",
	"target", "started", "pending", "ready", "url", "kind", "admin", "created")

// msgTypes are Jupyter's kernel message types; a message of any other
// type keeps only its length.
var msgTypes = set("execute_request", "execute_reply", "execute_input", "execute_result", "stream",
	"display_data", "update_display_data", "clear_output", "status", "error", "kernel_info_request",
	"kernel_info_reply", "comm_open", "comm_msg", "comm_close", "comm_info_request", "comm_info_reply",
	"complete_request", "complete_reply", "inspect_request", "inspect_reply", "history_request",
	"history_reply", "is_complete_request", "is_complete_reply", "shutdown_request", "shutdown_reply",
	"interrupt_request", "interrupt_reply", "input_request", "input_reply", "debug_request", "debug_reply",
	"debug_event", "usage_request", "usage_reply", "iopub_welcome", "connect_request", "connect_reply",
	"apply_request", "apply_reply", "data_pub")

// Content fields kept, each from its closed set.
var (
	executionStates = set("busy", "idle", "starting", "restarting", "dead", "terminating", "autorestarting", "connected")
	replyStatuses   = set("ok", "error", "aborted", "abort", "complete", "incomplete", "invalid", "unknown")
	streamNames     = set("stdout", "stderr")
)
