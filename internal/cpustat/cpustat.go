// Package cpustat reads how busy the machine's processors are (/proc/stat)
// and how much of them a process used (/proc/PID/stat), so that a run
// can tell when the harness, not the candidate, was the bottleneck.
package cpustat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// Times are cumulative processor times since boot, all cores together.
type Times struct {
	At                         time.Time
	Cores                      int
	User, System, Idle, IOWait time.Duration // System holds irq and softirq too
	Steal                      time.Duration // taken by the hypervisor
	Self                       time.Duration // this process (user + system)
}

// Total is all the time the cores had.
func (t Times) Total() time.Duration { return t.User + t.System + t.Idle + t.IOWait + t.Steal }

// Read reads the machine's and this process's processor times.
func Read() (Times, error) {
	t := Times{At: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t, fmt.Errorf("read processor times: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) > 8 && f[0] == "cpu":
			v := make([]time.Duration, 8)
			for i := range v {
				n, err := strconv.ParseInt(f[i+1], 10, 64)
				if err != nil {
					return t, fmt.Errorf("/proc/stat: %q: %w", sc.Text(), err)
				}
				v[i] = time.Duration(n) * time.Second / clockTicks
			}
			// user nice system idle iowait irq softirq steal
			t.User, t.System, t.Idle, t.IOWait, t.Steal = v[0]+v[1], v[2]+v[5]+v[6], v[3], v[4], v[7]
		case strings.HasPrefix(f[0], "cpu"):
			t.Cores++
		}
	}
	self, err := ReadProc("self")
	if err != nil {
		return t, fmt.Errorf("read this process's processor time: %w", err)
	}
	t.Self = self.CPU
	return t, nil
}

// Proc is what /proc/PID/stat and /proc/PID/schedstat say of one process.
type Proc struct {
	CPU time.Duration // user and system time since it started
	RSS int64         // resident memory, bytes
	// Wait is how long its main thread (a Node process's event loop) has
	// waited for a processor while ready to run; -1 where the kernel does
	// not keep scheduler statistics.
	Wait time.Duration
}

// ReadProc reads /proc/PID/stat (pid "self" for this process).
func ReadProc(pid string) (Proc, error) {
	var p Proc
	path := "/proc/" + pid + "/stat"
	b, err := os.ReadFile(path)
	if err != nil {
		return p, err
	}
	// The command may hold spaces and parentheses: fields count from the last ')'.
	rest := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(rest) < 22 {
		return p, fmt.Errorf("%s: too short", path)
	}
	ut, err1 := strconv.ParseInt(rest[11], 10, 64)
	st, err2 := strconv.ParseInt(rest[12], 10, 64)
	rss, err3 := strconv.ParseInt(rest[21], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return p, fmt.Errorf("%s: utime %q, stime %q, rss %q", path, rest[11], rest[12], rest[21])
	}
	p.CPU = time.Duration(ut+st) * time.Second / clockTicks
	p.RSS = rss * int64(os.Getpagesize())
	p.Wait = readWait("/proc/" + pid + "/schedstat")
	return p, nil
}

// readWait reads the run-queue wait, in nanoseconds, from a schedstat
// file: "time on a processor, time waiting for one, time slices".
func readWait(path string) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return -1
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return time.Duration(n)
}

// Shares is how the cores' time went between two readings, as shares of
// all of it (0–1).
type Shares struct {
	Busy  float64 `json:"busy"` // user and system, everyone's
	Idle  float64 `json:"idle"` // idle and I/O wait
	Steal float64 `json:"steal"`
	Self  float64 `json:"self"` // this process
	Cores int     `json:"cores"`
}

// Since returns the shares from an earlier reading to this one.
func (t Times) Since(prev Times) Shares {
	total := t.Total() - prev.Total()
	s := Shares{Cores: t.Cores}
	if total <= 0 {
		return s
	}
	f := func(d time.Duration) float64 { return min(1, max(0, float64(d)/float64(total))) }
	s.Busy = f(t.User + t.System - prev.User - prev.System)
	s.Idle = f(t.Idle + t.IOWait - prev.Idle - prev.IOWait)
	s.Steal = f(t.Steal - prev.Steal)
	s.Self = f(t.Self - prev.Self)
	return s
}
