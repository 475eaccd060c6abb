package procwatch

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWatchSeesAnExitAndARestart(t *testing.T) {
	const marker = "procwatch-test-marker-7f3a"
	start := func() *exec.Cmd {
		cmd := exec.Command("sh", "-c", "sleep 60; : "+marker)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	first := start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exits := make(chan Exit, 4)
	go func() { _ = Watch(ctx, marker, 20*time.Millisecond, exits) }()
	time.Sleep(100 * time.Millisecond)

	got, err := Matching(marker)
	require.NoError(t, err)
	assert.Contains(t, got, first.Process.Pid)

	require.NoError(t, first.Process.Kill()) // as the OOM killer would
	_ = first.Wait()
	select {
	case e := <-exits:
		assert.Equal(t, first.Process.Pid, e.PID)
		assert.Contains(t, e.String(), marker)
	case <-ctx.Done():
		t.Fatal("the exit was not seen")
	}

	second := start() // the supervisor's restart is watched too
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, second.Process.Kill())
	_ = second.Wait()
	select {
	case e := <-exits:
		assert.Equal(t, second.Process.Pid, e.PID)
	case <-ctx.Done():
		t.Fatal("the restarted process's exit was not seen")
	}
}
