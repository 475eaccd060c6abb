package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/internal/memlimit"
)

// profiles are the developer's --cpuprofile and --memprofile (hidden):
// what the harness costs, measured on the real command (go tool pprof).
type profiles struct {
	cpu, mem string
	cpuFile  *os.File
}

func (p *profiles) flags(root *cobra.Command) {
	fs := root.PersistentFlags()
	fs.StringVar(&p.cpu, "cpuprofile", "", "write a CPU profile of the command to `FILE` (for developers: go tool pprof)")
	fs.StringVar(&p.mem, "memprofile", "", "write a heap profile to `FILE` when the command ends (for developers: go tool pprof)")
	_ = fs.MarkHidden("cpuprofile")
	_ = fs.MarkHidden("memprofile")
}

func (p *profiles) start() error {
	if p.cpu == "" {
		return nil
	}
	f, err := os.Create(p.cpu)
	if err != nil {
		return usageError{fmt.Errorf("--cpuprofile: %w", err)}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	p.cpuFile = f
	return nil
}

// stop ends the CPU profile and writes the heap profile, whatever the
// command's outcome (compare's regression is an error, too).
func (p *profiles) stop() error {
	if p.cpuFile != nil {
		pprof.StopCPUProfile()
		if err := p.cpuFile.Close(); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		p.cpuFile = nil
	}
	if p.mem == "" {
		return nil
	}
	f, err := os.Create(p.mem)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	defer f.Close()
	runtime.GC() // what is live, not what awaits collection
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	return f.Close()
}

// logPeakMemory logs (with -v) the most memory this process held: its own
// peak RSS, without the candidates it ran, which is what a machine must
// have for hubreplay itself.
func logPeakMemory() {
	if !slog.Default().Enabled(context.Background(), slog.LevelDebug) {
		return // read /proc only for a log that will be written
	}
	if peak, ok := memlimit.PeakRSS(os.Getpid()); ok {
		slog.Debug("hubreplay's peak memory", "rss_bytes", peak)
	}
}
