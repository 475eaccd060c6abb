package capture

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Running finds the processes under procDir (/proc) that are a hubreplay
// capture, not counting self: what 'hubreplay tap' signals through an exec
// into its container in the proxy pod (SIGINT: end the trace and stop;
// SIGUSR1: a flight recorder's dump), where no shell or pidof exists.
func Running(procDir string, self int) ([]int, error) {
	dirs, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("find the capture: %w", err)
	}
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(procDir, d.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile, or not ours to read
		}
		args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
		if len(args) >= 2 && filepath.Base(string(args[0])) == "hubreplay" && string(args[1]) == "capture" {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
