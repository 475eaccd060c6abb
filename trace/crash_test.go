package trace_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// The crash tests run a real writer in a child process (this test binary,
// re-executed) and kill it with SIGKILL: no deferred Close, no flush on
// the way out, exactly what the OOM killer does to a capture.
const crashEnv = "HUBREPLAY_CRASH_CHILD"

// seqRecord is record i of the child's deterministic sequence.
func seqRecord(i int) trace.Record {
	return &trace.WSFrame{TS: time.Duration(i) * time.Millisecond, Conn: trace.ConnID(i), Dir: trace.ServerToClient,
		Op: trace.OpText, Fin: true, Len: int64(i), MsgType: "stream", Channel: "iopub"}
}

// TestCrashChild is the child's body; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("runs only as the child of a crash test")
	}
	mode, path, _ := strings.Cut(spec, ":")
	w, err := trace.Create(path, testHeader, &trace.WriterOptions{FlushInterval: 200 * time.Millisecond, FlushRecords: 1 << 20})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	i := 0
	write := func(n int) {
		for ; n > 0; n-- {
			if err := w.Write(seqRecord(i)); err != nil {
				fmt.Println("error", err)
				os.Exit(2)
			}
			i++
		}
	}
	switch mode {
	case "idle":
		// Explicit flushes, then records left to the flush timer, then idle.
		for range 3 {
			write(100)
			w.Flush()
			fmt.Println("flushed", i+1)
		}
		write(50)
		fmt.Println("wrote", i+1)
		select {}
	case "busy":
		// Write without pause; announce each explicit flush.
		for {
			write(500)
			w.Flush()
			fmt.Println("flushed", i+1)
			write(137) // left in the buffer when the kill comes
		}
	}
}

type crashChild struct {
	cmd   *exec.Cmd
	lines *bufio.Scanner
}

func startCrashChild(t *testing.T, mode, path string) *crashChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), crashEnv+"="+mode+":"+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return &crashChild{cmd: cmd, lines: bufio.NewScanner(out)}
}

// expect reads the child's next announcement and returns its count.
func (c *crashChild) expect(t *testing.T, word string) int {
	t.Helper()
	for c.lines.Scan() {
		f := strings.Fields(c.lines.Text())
		if len(f) == 2 && f[0] == word {
			n, err := strconv.Atoi(f[1])
			require.NoError(t, err)
			return n
		}
		require.NotEqual(t, "error", f[0], "child: %s", c.lines.Text())
	}
	t.Fatalf("child ended before saying %q: %v", word, c.lines.Err())
	return 0
}

func (c *crashChild) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	err := c.cmd.Wait()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "child must die of the kill, got %v", err)
	require.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal())
}

// readFile reads a trace file through its end or its damage.
func readFile(t *testing.T, path string) (int, error) {
	t.Helper()
	r, err := trace.Open(path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n := 0
	for {
		rec, err := r.Next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return n, err
		}
		if n > 0 { // after the header: the child's sequence, in order
			f, ok := rec.(*trace.WSFrame)
			require.True(t, ok, "record %d is %T", n, rec)
			require.Equal(t, trace.ConnID(n-1), f.Conn, "record %d out of sequence", n)
		}
		n++
	}
}

func requireTruncated(t *testing.T, err error, records int) {
	t.Helper()
	var de *trace.DamageError
	require.True(t, errors.As(err, &de), "want a truncation error, got %v", err)
	require.True(t, de.Truncated, "%v", err)
	require.Equal(t, uint64(records), de.Records)
	require.Contains(t, err.Error(), "truncated at byte")
}

// Records left to the flush timer reach the file without any further
// write, so an idle capture killed later loses nothing.
func TestCrashAfterTimerFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "killed.trace")
	c := startCrashChild(t, "idle", path)
	for range 3 {
		c.expect(t, "flushed")
	}
	wrote := c.expect(t, "wrote")

	// Wait (bounded) for the timer to put the last records on disk. This
	// checks that the flush happens, not how fast: the bound is generous.
	deadline := time.Now().Add(15 * time.Second)
	n, err := readFile(t, path)
	for n < wrote && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n, err = readFile(t, path)
	}
	require.Equal(t, wrote, n, "records on disk before the kill (%v)", err)

	c.kill(t)
	n, err = readFile(t, path)
	require.Equal(t, wrote, n, "records after the kill")
	requireTruncated(t, err, wrote)
}

// A writer killed while busy leaves every record of its last flush and
// maybe a few more whole frames, never a partial or reordered one.
func TestCrashWhileWriting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "killed.trace")
	c := startCrashChild(t, "busy", path)
	var flushed int
	for range 5 {
		flushed = c.expect(t, "flushed")
	}
	c.kill(t)
	n, err := readFile(t, path)
	require.GreaterOrEqual(t, n, flushed, "every record flushed before the kill must read back")
	requireTruncated(t, err, n)
}
