package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Cache holds npm installs of configurable-http-proxy, one directory per
// version, so that a version is downloaded once and runs offline after.
type Cache struct {
	Dir string // default: the user cache directory's hubreplay/chp
}

// DefaultCache is under the user's cache directory ($XDG_CACHE_HOME or
// ~/.cache), or $HUBREPLAY_CACHE when set.
func DefaultCache() *Cache {
	if d := os.Getenv("HUBREPLAY_CACHE"); d != "" {
		return &Cache{Dir: filepath.Join(d, "chp")}
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return &Cache{Dir: filepath.Join(base, "hubreplay", "chp")}
}

// Program is a candidate ready to start: the executable and the arguments
// before JupyterHub's flags.
type Program struct {
	Spec Spec
	// Version is what the candidate says it is (package.json's version).
	Version string
	Path    string   // executable
	Args    []string // arguments before the proxy flags
	// HasMetrics: the build accepts --metrics-port (CHP ≥ 4.2).
	HasMetrics bool
	// Command: a cmd: candidate, run through sh -c after filling in placeholders.
	Command string
}

// ErrNoNode says Node.js is missing.
var ErrNoNode = errors.New("node (Node.js) is not on PATH; configurable-http-proxy candidates need it")

// Obtain makes a candidate runnable: installs an npm version into the
// cache (once), prepares a checkout, or checks a command.
func Obtain(ctx context.Context, s Spec, c *Cache) (*Program, error) {
	if c == nil {
		c = DefaultCache()
	}
	switch s.Kind {
	case KindNPM:
		return c.npm(ctx, s)
	case KindPath:
		return checkout(ctx, s)
	case KindCommand:
		return &Program{Spec: s, Command: s.Command, Version: "command"}, nil
	case KindImage:
		return imageProgram(s)
	}
	return nil, fmt.Errorf("candidate %s: unknown kind %q", s, s.Kind)
}

func node() (string, error) {
	p, err := exec.LookPath("node")
	if err != nil {
		return "", ErrNoNode
	}
	return p, nil
}

func (c *Cache) npm(ctx context.Context, s Spec) (*Program, error) {
	nodeBin, err := node()
	if err != nil {
		return nil, err
	}
	version := s.Version
	if !exactVersionRE.MatchString(version) {
		// A tag (latest) or a range (5, 5.2): resolve it now, so the cache
		// holds a real version and the report names it.
		if version, err = resolveVersion(ctx, version); err != nil {
			return nil, fmt.Errorf("candidate %s: %w", s, err)
		}
	}
	dir := filepath.Join(c.Dir, "chp@"+version)
	pkg := filepath.Join(dir, "node_modules", "configurable-http-proxy")
	if _, err := os.Stat(filepath.Join(pkg, "bin", "configurable-http-proxy")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("candidate %s: %w", s, err)
		}
		if _, err := run(ctx, dir, "npm", "install", "--no-audit", "--no-fund", "--omit=dev", "--prefix", dir, "configurable-http-proxy@"+version); err != nil {
			_ = os.RemoveAll(dir)
			if strings.Contains(err.Error(), "ETARGET") || strings.Contains(err.Error(), "No matching version") {
				return nil, fmt.Errorf("candidate %s: npm has no configurable-http-proxy %s (see npm view configurable-http-proxy versions)", s, version)
			}
			return nil, fmt.Errorf("candidate %s: npm install: %w", s, err)
		}
	}
	return program(s, nodeBin, pkg)
}

var exactVersionRE = regexp.MustCompile(`^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$`)

// resolveVersion asks npm which release a tag or range stands for (the
// newest, for a range).
func resolveVersion(ctx context.Context, want string) (string, error) {
	noSuch := fmt.Errorf("npm has no configurable-http-proxy %s (see npm view configurable-http-proxy versions)", want)
	out, err := run(ctx, "", "npm", "view", "configurable-http-proxy@"+want, "version", "--json")
	if err != nil && strings.Contains(out, "E404") {
		return "", noSuch
	}
	if err != nil {
		return "", fmt.Errorf("ask npm for configurable-http-proxy@%s: %w", want, err)
	}
	out = strings.TrimSpace(out)
	var one string
	var many []string
	switch {
	case json.Unmarshal([]byte(out), &one) == nil && one != "":
		return one, nil
	case json.Unmarshal([]byte(out), &many) == nil && len(many) > 0:
		return many[len(many)-1], nil // npm lists them oldest first
	}
	return "", noSuch
}

// checkout prepares a fork or PR checkout: it must be configurable-http-
// proxy (package.json says so, bin/configurable-http-proxy exists), and
// its dependencies are installed if they are not.
func checkout(ctx context.Context, s Spec) (*Program, error) {
	nodeBin, err := node()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(s.Path)
	if err != nil {
		return nil, err
	}
	var pkg struct {
		Name string `json:"name"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil || pkg.Name != "configurable-http-proxy" {
		return nil, fmt.Errorf("candidate %s: %s is not a configurable-http-proxy checkout (no package.json naming it)", s, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "configurable-http-proxy")); err != nil {
		return nil, fmt.Errorf("candidate %s: %s has no bin/configurable-http-proxy", s, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		if _, err := run(ctx, dir, "npm", "install", "--no-audit", "--no-fund", "--omit=dev"); err != nil {
			return nil, fmt.Errorf("candidate %s: npm install in %s: %w", s, dir, err)
		}
	}
	return program(s, nodeBin, dir)
}

// program describes an installed package directory.
func program(s Spec, nodeBin, pkgDir string) (*Program, error) {
	var pkg struct {
		Version string `json:"version"`
	}
	b, err := os.ReadFile(filepath.Join(pkgDir, "package.json"))
	if err != nil {
		return nil, fmt.Errorf("candidate %s: %w", s, err)
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return nil, fmt.Errorf("candidate %s: package.json: %w", s, err)
	}
	bin := filepath.Join(pkgDir, "bin", "configurable-http-proxy")
	p := &Program{Spec: s, Version: pkg.Version, Path: nodeBin, Args: []string{bin}}
	// --metrics-port came with CHP 4.2; ask the build itself.
	if help, err := exec.Command(nodeBin, bin, "--help").CombinedOutput(); err == nil {
		p.HasMetrics = bytes.Contains(help, []byte("--metrics-port"))
	}
	return p, nil
}

// run runs a command, its output in the error when it fails.
func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	if _, err := exec.LookPath(name); err != nil {
		return "", fmt.Errorf("%s is not on PATH", name)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errOut.String())
		if i := strings.LastIndex(msg, "\n"); len(msg) > 600 && i > 0 {
			msg = msg[len(msg)-600:]
		}
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// imageUnavailable explains why an image candidate cannot run here.
func imageUnavailable(s Spec) error {
	host, ok := DockerEngine()
	if !ok {
		return fmt.Errorf("candidate %s: image candidates run in a container, and no Docker engine answers at %s (the docker client alone is not enough); use chp@VERSION or chp:PATH here, or a machine where Docker runs", s, host)
	}
	return fmt.Errorf("candidate %s: the Docker engine at %s cannot run it", s, host)
}

// DockerEngine reports the Docker host and whether an engine answers its
// /_ping there (only unix sockets are tried).
func DockerEngine() (string, bool) {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return host, false
	}
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return host, false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"); err != nil {
		return host, false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return host, err == nil && strings.Contains(line, " 200 ")
}
