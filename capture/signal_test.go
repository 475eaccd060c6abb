package capture

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The capture is found by its command line among the pod's processes
// (the proxy's, the exec's own), as /proc lays them out.
func TestRunningFindsTheCapture(t *testing.T) {
	proc := t.TempDir()
	for pid, cmdline := range map[int]string{
		1:  "node\x00/usr/local/bin/configurable-http-proxy\x00--port=8000\x00",
		7:  "/hubreplay\x00capture\x00--iface\x00any\x00-o\x00-\x00",
		12: "/hubreplay\x00capture-signal\x00INT\x00",
		13: "/hubreplay\x00capture\x00--iface\x00any\x00", // the exec itself, were it a capture
		20: "/usr/bin/hubreplay\x00inspect\x00x.trace\x00",
	} {
		dir := filepath.Join(proc, strconv.Itoa(pid))
		require.NoError(t, os.Mkdir(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644))
	}
	require.NoError(t, os.Mkdir(filepath.Join(proc, "self"), 0o755))
	pids, err := Running(proc, 13)
	require.NoError(t, err)
	assert.Equal(t, []int{7}, pids)

	_, err = Running(filepath.Join(proc, "missing"), 0)
	assert.Error(t, err)
}
