// Package proxy runs candidate proxy builds the way a z2jh deployment runs
// configurable-http-proxy, and watches them the way an operator's Grafana
// would: it obtains a candidate (an npm release, a fork's checkout, a
// container image, any command), starts it with JupyterHub's flags on free
// loopback ports, optionally under a memory limit, restarts it after a
// delay when it dies (as a kubelet does), records every exit with its
// cause, and samples its memory, CPU, file descriptors, TCP sockets by
// state, Node heap figures and the log lines that matter.
package proxy

import (
	"fmt"
	"regexp"
	"strings"
)

// Kind is what sort of candidate a Spec names.
type Kind string

const (
	KindNPM     Kind = "npm"     // chp@4.5.6, chp@latest
	KindPath    Kind = "path"    // chp:../my-fork
	KindImage   Kind = "image"   // image:REPO:TAG
	KindCommand Kind = "command" // cmd:'…'
)

// Spec is a candidate, described by one string.
type Spec struct {
	Raw     string
	Kind    Kind
	Version string // KindNPM: a version or "latest"
	Path    string // KindPath: a checkout of configurable-http-proxy
	Image   string // KindImage: REPO:TAG
	Command string // KindCommand: with {port}, {api_port}, {token} … placeholders
}

func (s Spec) String() string { return s.Raw }

var versionRE = regexp.MustCompile(`^(latest|next|\d+(\.\d+){0,2}([-+][0-9A-Za-z.-]+)?)$`)

// SpecHelp says what a candidate string may be, for errors and --help.
const SpecHelp = `a candidate is one of:
  chp@VERSION    configurable-http-proxy from npm, e.g. chp@4.5.6, chp@latest
  chp:PATH       a checkout of configurable-http-proxy (a fork, a PR)
  image:REPO:TAG a container image (needs a Docker engine)
  cmd:COMMAND    any command that listens; {port}, {api_port}, {ip}, {token},
                 {default_target} and {metrics_port} are filled in`

// ParseSpec reads a candidate string.
func ParseSpec(s string) (Spec, error) {
	sp := Spec{Raw: s}
	switch {
	case strings.HasPrefix(s, "chp@"):
		sp.Kind, sp.Version = KindNPM, strings.TrimPrefix(s, "chp@")
		if !versionRE.MatchString(sp.Version) {
			return sp, fmt.Errorf("candidate %q: %q is not an npm version (like 4.5.6 or latest)", s, sp.Version)
		}
	case strings.HasPrefix(s, "chp:"):
		sp.Kind, sp.Path = KindPath, strings.TrimPrefix(s, "chp:")
		if sp.Path == "" {
			return sp, fmt.Errorf("candidate %q: chp: needs the path of a checkout", s)
		}
	case strings.HasPrefix(s, "image:"):
		sp.Kind, sp.Image = KindImage, strings.TrimPrefix(s, "image:")
		if sp.Image == "" || strings.ContainsAny(sp.Image, " \t") {
			return sp, fmt.Errorf("candidate %q: image: needs REPO:TAG", s)
		}
	case strings.HasPrefix(s, "cmd:"):
		sp.Kind, sp.Command = KindCommand, strings.TrimSpace(strings.TrimPrefix(s, "cmd:"))
		if sp.Command == "" {
			return sp, fmt.Errorf("candidate %q: cmd: needs a command", s)
		}
		if !strings.Contains(sp.Command, "{port}") {
			return sp, fmt.Errorf("candidate %q: the command must listen on {port}", s)
		}
	default:
		return sp, fmt.Errorf("candidate %q not understood; %s", s, SpecHelp)
	}
	return sp, nil
}
