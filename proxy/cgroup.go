package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// memCgroup is a memory cgroup made for one candidate: the kernel caps it
// and OOM-kills in it, as in a pod. The candidate's process joins it by
// writing its pid to procs() before it execs.
type memCgroup struct {
	dir   string
	v2    bool
	how   string // the mechanism, for the report
	scope func() // ends the process holding a transient systemd scope open
}

// cgroupFS is where the kernel's cgroup files are: the root of the
// mounts, this process's /proc/self/mountinfo and /proc/self/cgroup, and
// how to make a systemd scope. Tests lay one out in a temp dir.
type cgroupFS struct {
	root       string // /sys/fs/cgroup
	mountinfo  string // contents of /proc/self/mountinfo
	self       string // contents of /proc/self/cgroup
	systemdRun string // the systemd-run program ("" : look it up)
	// cgroupOf is a process's cgroup path in the v2 hierarchy.
	cgroupOf func(pid int) (string, error)
	euid     int
}

func hostCgroupFS() cgroupFS {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	self, _ := os.ReadFile("/proc/self/cgroup")
	return cgroupFS{root: "/sys/fs/cgroup", mountinfo: string(mi), self: string(self), cgroupOf: procCgroupV2, euid: os.Geteuid()}
}

// newMemCgroup caps limit bytes in the first way this machine offers:
// a cgroup v1 memory group (memory.limit_in_bytes); a cgroup v2 child
// group with memory.max under this process's own group where the memory
// controller is delegated to it; a transient systemd scope with
// MemoryMax= (what the kubelet's systemd cgroup driver makes for a pod).
// It says why none worked.
func newMemCgroup(limit int64) (*memCgroup, error) { return hostCgroupFS().newMemCgroup(limit) }

func (fs cgroupFS) newMemCgroup(limit int64) (*memCgroup, error) {
	v1, err1 := fs.v1(limit)
	if err1 == nil {
		return v1, nil
	}
	mount := fs.v2Mount()
	if mount == "" {
		return nil, fmt.Errorf("%w; and no cgroup v2 mount", err1)
	}
	g, err2 := fs.delegated(mount, limit)
	if err2 == nil {
		return g, nil
	}
	g, err3 := fs.systemdScope(mount, limit)
	if err3 == nil {
		return g, nil
	}
	return nil, fmt.Errorf("%v; %v; %v", err1, err2, err3)
}

func name() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "hubreplay-" + hex.EncodeToString(b)
}

// v1 makes a group under the v1 memory controller's mount.
func (fs cgroupFS) v1(limit int64) (*memCgroup, error) {
	mem := filepath.Join(fs.root, "memory")
	if _, err := os.Stat(filepath.Join(mem, "memory.limit_in_bytes")); err != nil {
		return nil, fmt.Errorf("no cgroup v1 memory controller at %s", mem)
	}
	dir := filepath.Join(mem, name())
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make a cgroup v1 memory group: %w", err)
	}
	g := &memCgroup{dir: dir, how: fmt.Sprintf("cgroup v1 memory limit %d MiB", limit>>20)}
	if err := g.write("memory.limit_in_bytes", strconv.FormatInt(limit, 10)); err != nil {
		g.remove()
		return nil, err
	}
	// Without swap accounting the limit holds for RAM alone; with it,
	// keep swap out too, as a Kubernetes limit does.
	_ = g.write("memory.memsw.limit_in_bytes", strconv.FormatInt(limit, 10))
	_ = g.write("memory.swappiness", "0")
	return g, nil
}

// v2Mount is where the cgroup v2 hierarchy is mounted ("" if nowhere).
func (fs cgroupFS) v2Mount() string {
	sc := bufio.NewScanner(strings.NewReader(fs.mountinfo))
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "cgroup2" {
			return filepath.Join(fs.root, strings.TrimPrefix(f[4], "/sys/fs/cgroup"))
		}
	}
	return ""
}

// selfV2 is this process's group in the v2 hierarchy ("0::/path").
func (fs cgroupFS) selfV2() (string, bool) {
	for _, l := range strings.Split(fs.self, "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p, true
		}
	}
	return "", false
}

// delegated makes a child of this process's own group, where the memory
// controller reaches it: the group offers memory and lets its children
// have it (or can be told to: a group with processes of its own cannot,
// the v2 rule of no internal processes, unless it is the root).
func (fs cgroupFS) delegated(mount string, limit int64) (*memCgroup, error) {
	self, ok := fs.selfV2()
	if !ok {
		return nil, errors.New("cgroup v2: this process's group is unknown")
	}
	parent := filepath.Join(mount, self)
	ctrl, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2: read %s: %w", parent, err)
	}
	if !hasWord(string(ctrl), "memory") {
		return nil, fmt.Errorf("cgroup v2: the memory controller is not delegated to %s", self)
	}
	sub, _ := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
	if !hasWord(string(sub), "memory") {
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			return nil, fmt.Errorf("cgroup v2: enable memory for the children of %s (a group with processes of its own cannot): %w", self, err)
		}
	}
	dir := filepath.Join(parent, name())
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup v2: make a group under %s: %w", self, err)
	}
	g := &memCgroup{dir: dir, v2: true, how: fmt.Sprintf("cgroup v2 memory.max %d MiB (a child of %s)", limit>>20, self)}
	if err := g.limitV2(limit); err != nil {
		g.remove()
		return nil, err
	}
	return g, nil
}

// limitV2 sets memory.max, and keeps swap out as a Kubernetes limit does.
func (g *memCgroup) limitV2(limit int64) error {
	if err := g.write("memory.max", strconv.FormatInt(limit, 10)); err != nil {
		return err
	}
	_ = g.write("memory.swap.max", "0")
	return nil
}

// systemdScope asks systemd for a transient scope with MemoryMax= (the
// user's manager when not root), held open by a sleeping process; the
// candidate then joins the scope's group. The scope's limit is read back:
// a scope without it would cap nothing.
func (fs cgroupFS) systemdScope(mount string, limit int64) (*memCgroup, error) {
	run := fs.systemdRun
	if run == "" {
		p, err := exec.LookPath("systemd-run")
		if err != nil {
			return nil, errors.New("cgroup v2: no systemd-run for a scope with MemoryMax=")
		}
		run = p
	}
	unit := name()
	args := []string{"--scope", "--quiet", "--collect", "--unit", unit, "-p", "MemoryMax=" + strconv.FormatInt(limit, 10), "-p", "MemorySwapMax=0"}
	if fs.euid != 0 {
		args = append([]string{"--user"}, args...)
	}
	cmd := exec.Command(run, append(args, "sleep", "infinity")...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cgroup v2: %s: %w", run, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	// systemd-run moves itself into the scope, then execs the command.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		p, err := fs.cgroupOf(cmd.Process.Pid)
		if err == nil && strings.HasSuffix(p, "/"+unit+".scope") {
			g := &memCgroup{dir: filepath.Join(mount, p), v2: true, scope: stop, how: fmt.Sprintf("cgroup v2 memory.max %d MiB (systemd scope %s.scope)", limit>>20, unit)}
			if got := strings.TrimSpace(g.read("memory.max")); got != strconv.FormatInt(limit, 10) {
				stop()
				return nil, fmt.Errorf("cgroup v2: systemd scope %s.scope has memory.max %q, not %d", unit, got, limit)
			}
			return g, nil
		}
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("cgroup v2: systemd-run %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("cgroup v2: systemd scope %s.scope did not appear within 10 s", unit)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// procCgroupV2 reads a process's v2 group from /proc.
func procCgroupV2(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	if p, ok := (cgroupFS{self: string(b)}).selfV2(); ok {
		return p, nil
	}
	return "", errors.New("no cgroup v2 entry")
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func (g *memCgroup) write(file, v string) error {
	if err := os.WriteFile(filepath.Join(g.dir, file), []byte(v), 0o644); err != nil {
		return fmt.Errorf("memory cgroup %s: %w", file, err)
	}
	return nil
}

func (g *memCgroup) read(file string) string {
	b, _ := os.ReadFile(filepath.Join(g.dir, file))
	return string(b)
}

// procs is the file a process writes its pid to, to join.
func (g *memCgroup) procs() string { return filepath.Join(g.dir, "cgroup.procs") }

// String says how the limit is enforced, for the report.
func (g *memCgroup) String() string { return g.how }

// oomKills is how many times the kernel's OOM killer struck in the group
// (v1: memory.oom_control; v2: memory.events).
func (g *memCgroup) oomKills() int64 {
	file := "memory.oom_control"
	if g.v2 {
		file = "memory.events"
	}
	for _, l := range strings.Split(g.read(file), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// usage is the group's memory use in bytes.
func (g *memCgroup) usage() int64 {
	file := "memory.usage_in_bytes"
	if g.v2 {
		file = "memory.current"
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(g.read(file)), 10, 64)
	return n
}

// remove deletes the group; it must be empty. A systemd scope goes when
// its last process does.
func (g *memCgroup) remove() {
	if g.scope != nil {
		g.scope()
		return
	}
	_ = os.Remove(g.dir)
}
