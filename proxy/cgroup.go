package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupV1Memory is where a writable cgroup v1 memory controller is
// mounted on machines that have one (this project's CI machines do).
const cgroupV1Memory = "/sys/fs/cgroup/memory"

// memCgroup is a memory cgroup made for one candidate.
type memCgroup struct{ dir string }

// newMemCgroup makes a cgroup v1 memory group with limit bytes, or says
// why it cannot.
func newMemCgroup(limit int64) (*memCgroup, error) {
	if _, err := os.Stat(filepath.Join(cgroupV1Memory, "memory.limit_in_bytes")); err != nil {
		return nil, fmt.Errorf("no cgroup v1 memory controller at %s", cgroupV1Memory)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dir := filepath.Join(cgroupV1Memory, "hubreplay-"+hex.EncodeToString(b))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make a memory cgroup: %w", err)
	}
	g := &memCgroup{dir: dir}
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

func (g *memCgroup) write(file, v string) error {
	if err := os.WriteFile(filepath.Join(g.dir, file), []byte(v), 0); err != nil {
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

// oomKills is how many times the kernel's OOM killer struck in the group.
func (g *memCgroup) oomKills() int64 {
	for _, l := range strings.Split(g.read("memory.oom_control"), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// usage is the group's memory use in bytes.
func (g *memCgroup) usage() int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(g.read("memory.usage_in_bytes")), 10, 64)
	return n
}

// remove deletes the group; it must be empty.
func (g *memCgroup) remove() { _ = os.Remove(g.dir) }
