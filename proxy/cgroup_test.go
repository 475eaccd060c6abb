package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A cgroup v2 machine laid out in a temp dir: what the kernel shows in
// /proc/self/mountinfo, /proc/self/cgroup and the group's files.
func v2Machine(t *testing.T, self, controllers, subtree string) (cgroupFS, string) {
	t.Helper()
	root := t.TempDir()
	parent := filepath.Join(root, self)
	require.NoError(t, os.MkdirAll(parent, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(parent, "cgroup.controllers"), []byte(controllers+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte(subtree+"\n"), 0o644))
	return cgroupFS{
		root:       root,
		mountinfo:  "22 1 0:21 / /proc rw,nosuid - proc proc rw\n30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate\n",
		self:       "0::" + self + "\n",
		systemdRun: filepath.Join(root, "no-systemd-run"),
		cgroupOf:   func(int) (string, error) { return "", os.ErrNotExist },
	}, parent
}

// Where the memory controller is delegated to hubreplay's group (a
// systemd user service with Delegate=yes, a container's own namespace),
// the candidate gets a child group with memory.max; OOM kills and usage
// are read from memory.events and memory.current.
func TestCgroupV2DelegatedGroup(t *testing.T) {
	fs, parent := v2Machine(t, "/user.slice/user-1000.slice/user@1000.service/app.slice/ci.service", "cpuset cpu io memory pids", "")
	g, err := fs.newMemCgroup(256 << 20)
	require.NoError(t, err)
	sub, _ := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
	assert.Equal(t, "+memory", string(sub), "memory enabled for the children")
	assert.Equal(t, parent, filepath.Dir(g.dir), "a child of hubreplay's own group")
	assert.Equal(t, "268435456", g.read("memory.max"))
	assert.Equal(t, "0", g.read("memory.swap.max"), "no swap, as a pod")
	assert.Equal(t, filepath.Join(g.dir, "cgroup.procs"), g.procs())
	assert.Equal(t, "cgroup v2 memory.max 256 MiB (a child of /user.slice/user-1000.slice/user@1000.service/app.slice/ci.service)", g.String())

	// What the kernel writes when it OOM-kills in the group.
	require.NoError(t, os.WriteFile(filepath.Join(g.dir, "memory.events"), []byte("low 0\nhigh 0\nmax 311\noom 2\noom_kill 2\noom_group_kill 0\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(g.dir, "memory.current"), []byte("268001280\n"), 0o644))
	assert.EqualValues(t, 2, g.oomKills())
	assert.EqualValues(t, 268001280, g.usage())
}

// A group that does not get the memory controller cannot cap anything:
// the error says why for each way tried, and no group is left behind.
func TestCgroupV2NotDelegated(t *testing.T) {
	fs, parent := v2Machine(t, "/system.slice/runner.service", "cpu pids", "")
	_, err := fs.newMemCgroup(256 << 20)
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, "no cgroup v1 memory controller")
	assert.Contains(t, msg, "the memory controller is not delegated to /system.slice/runner.service")
	assert.Contains(t, msg, "no-systemd-run")
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		assert.False(t, e.IsDir(), "no group made: %s", e.Name())
	}

	// Offered memory, but it cannot be passed down (processes of its own):
	// the write to cgroup.subtree_control fails, and says so.
	fs, parent = v2Machine(t, "/system.slice/runner.service", "cpu memory pids", "")
	require.NoError(t, os.Remove(filepath.Join(parent, "cgroup.subtree_control")))
	require.NoError(t, os.Mkdir(filepath.Join(parent, "cgroup.subtree_control"), 0o755)) // unwritable as a file
	_, err = fs.newMemCgroup(256 << 20)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "enable memory for the children of /system.slice/runner.service")
}

// Where nothing is delegated, a transient systemd scope carries the
// limit (MemoryMax=), held open by a sleeping process that the candidate
// joins; the limit is read back from the scope's group, and a scope
// without it is refused: it would cap nothing.
func TestCgroupV2SystemdScope(t *testing.T) {
	fs, _ := v2Machine(t, "/system.slice/runner.service", "cpu pids", "")
	argsFile := filepath.Join(t.TempDir(), "args")
	fake := filepath.Join(t.TempDir(), "systemd-run")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\" > "+argsFile+"\nexec sleep 60\n"), 0o755))
	fs.systemdRun, fs.euid = fake, 1000
	var unit string
	fs.cgroupOf = func(int) (string, error) {
		b, err := os.ReadFile(argsFile)
		if err != nil {
			return "", err
		}
		f := strings.Fields(string(b))
		for i, a := range f {
			if a == "--unit" {
				unit = f[i+1]
			}
		}
		dir := "/user.slice/user-1000.slice/user@1000.service/app.slice/" + unit + ".scope"
		require.NoError(t, os.MkdirAll(filepath.Join(fs.root, dir), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(fs.root, dir, "memory.max"), []byte("268435456\n"), 0o644))
		return dir, nil
	}
	g, err := fs.newMemCgroup(256 << 20)
	require.NoError(t, err)
	b, _ := os.ReadFile(argsFile)
	assert.Equal(t, "--user --scope --quiet --collect --unit "+unit+" -p MemoryMax=268435456 -p MemorySwapMax=0 sleep infinity", strings.TrimSpace(string(b)))
	assert.Equal(t, "cgroup v2 memory.max 256 MiB (systemd scope "+unit+".scope)", g.String())
	assert.True(t, strings.HasSuffix(g.procs(), unit+".scope/cgroup.procs"))
	g.remove()

	// A scope whose memory.max is not the limit asked for.
	fs.cgroupOf = func(pid int) (string, error) {
		dir := "/system.slice/wrong.scope"
		b, _ := os.ReadFile(argsFile)
		f := strings.Fields(string(b))
		for i, a := range f {
			if a == "--unit" {
				dir = "/system.slice/" + f[i+1] + ".scope"
			}
		}
		require.NoError(t, os.MkdirAll(filepath.Join(fs.root, dir), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(fs.root, dir, "memory.max"), []byte("max\n"), 0o644))
		return dir, nil
	}
	require.NoError(t, os.Remove(argsFile))
	_, err = fs.newMemCgroup(256 << 20)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `has memory.max "max", not 268435456`)
}
