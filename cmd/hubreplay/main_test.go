package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

type result struct {
	code           int
	stdout, stderr string
}

func hubreplay(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, stdin, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// sampleFile writes a sample session and returns its path and records.
func sampleFile(t *testing.T) (string, trace.Header, []trace.Record) {
	t.Helper()
	h, recs := tracetest.Sample(tracetest.SampleOptions{Seed: 11, Users: 12, Duration: 8 * time.Minute})
	path := filepath.Join(t.TempDir(), "session.trace")
	// Frames of 256 records, as a capture's one-second flushes would cut them.
	w, err := trace.Create(path, h, &trace.WriterOptions{FlushRecords: 256})
	require.NoError(t, err)
	for _, r := range recs {
		require.NoError(t, w.Write(r))
	}
	require.NoError(t, w.Close())
	return path, h, recs
}

func TestEveryVerbHasHelp(t *testing.T) {
	for _, verb := range []string{"", "version", "capture", "verify", "generate", "fixtures", "proxy", "inspect", "slice", "cat", "capacity", "tap"} {
		args := []string{"--help"}
		if verb != "" {
			args = []string{verb, "--help"}
		}
		r := hubreplay(t, nil, args...)
		assert.Equal(t, 0, r.code, verb)
		assert.Contains(t, r.stdout, "Usage:", verb)
		assert.Contains(t, r.stdout, "hubreplay "+verb, verb)
	}
}

func TestVersion(t *testing.T) {
	r := hubreplay(t, nil, "version")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^hubreplay \S+ \(trace format hubreplay-trace v1, go`, r.stdout)
}

func TestUsageErrorsExitTwo(t *testing.T) {
	path, _, _ := sampleFile(t)
	for _, args := range [][]string{
		{"inspect"},
		{"inspect", "a", "b"},
		{"inspect", "--no-such-flag", path},
		{"slice", path, "--from", "+1m"},                           // no -o
		{"slice", path, "-o", "x.trace"},                           // no window
		{"slice", path, "--from", "soon", "-o", "x.trace"},         // bad time
		{"slice", path, "--from", "+5m", "--to", "+2m", "-o", "x"}, // backwards
		{"inspect", "--tz", "Mars/Olympus_Mons", path},
	} {
		r := hubreplay(t, nil, args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
		assert.True(t, strings.HasPrefix(r.stderr, "hubreplay: "), r.stderr)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	}
}

func TestInspect(t *testing.T) {
	path, h, recs := sampleFile(t)
	users := map[string]bool{}
	var http, ws int
	for _, r := range recs {
		switch r := r.(type) {
		case *trace.HTTP:
			http++
			users[r.User] = true
		case *trace.WSFrame:
			ws++
		}
	}
	delete(users, "")

	r := hubreplay(t, nil, "inspect", "--tz", "UTC", path)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `(?m)^users +12 distinct$`, r.stdout)
	assert.Regexp(t, `(?m)^HTTP +\d+ exchanges, 12 WebSocket upgrades$`, r.stdout)
	assert.Contains(t, r.stdout, "start    2026-11-03 15:50:00.000 UTC")
	assert.Contains(t, r.stdout, "per minute:")
	assert.Empty(t, r.stderr)

	r = hubreplay(t, nil, "inspect", "--json", path)
	require.Equal(t, 0, r.code, r.stderr)
	var s struct {
		Records uint64   `json:"records"`
		Users   []string `json:"users"`
		HTTP    struct {
			Exchanges int `json:"exchanges"`
		} `json:"http"`
		WS struct {
			Frames int `json:"frames"`
		} `json:"websocket"`
		Minutes []json.RawMessage `json:"minutes"`
		Header  trace.Header      `json:"header"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &s))
	assert.Equal(t, uint64(len(recs)+1), s.Records)
	assert.Len(t, s.Users, len(users))
	assert.Equal(t, http, s.HTTP.Exchanges)
	assert.Equal(t, ws, s.WS.Frames)
	assert.Len(t, s.Minutes, 9)
	assert.Equal(t, h.Start, s.Header.Start)
}

func TestInspectBadInput(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "peak.pcap")
	require.NoError(t, os.WriteFile(pcap, []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0o644))
	r := hubreplay(t, nil, "inspect", pcap)
	assert.Equal(t, 2, r.code)
	assert.Equal(t, "hubreplay: "+pcap+": not a hubreplay trace: it is a pcap packet capture (turn it into a trace with `hubreplay capture --pcap`)\n", r.stderr)
	assert.Empty(t, r.stdout)

	r = hubreplay(t, nil, "inspect", filepath.Join(dir, "missing.trace"))
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "missing.trace: no such file")

	// A capture killed mid-write: the summary of what is there, then the damage.
	path, _, _ := sampleFile(t)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	cut := filepath.Join(dir, "killed.trace")
	require.NoError(t, os.WriteFile(cut, data[:len(data)*2/3], 0o644))
	r = hubreplay(t, nil, "inspect", cut)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stdout, "DAMAGED")
	assert.Contains(t, r.stdout, "per minute:")
	assert.Regexp(t, `^hubreplay: .*killed.trace: trace truncated at byte \d+ \(frame \d+\): .*; the \d+ records before it are intact\n$`, r.stderr)

	// cat prints every record before the damage, then fails.
	r = hubreplay(t, nil, "cat", cut)
	assert.Equal(t, 2, r.code)
	var intact int
	_, err = fmt.Sscanf(r.stderr[strings.Index(r.stderr, "; the ")+len("; the "):], "%d", &intact)
	require.NoError(t, err, r.stderr)
	assert.Greater(t, intact, 100)
	assert.Equal(t, intact, strings.Count(r.stdout, "\n"), "cat printed exactly the intact records")
}

func TestCat(t *testing.T) {
	path, _, recs := sampleFile(t)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	dec, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer dec.Close()
	lines, err := dec.DecodeAll(data, nil)
	require.NoError(t, err)

	r := hubreplay(t, nil, "cat", path)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, string(lines), r.stdout, "cat prints what zstd -dc does")

	// The output is a trace: inspect reads it from standard input.
	r2 := hubreplay(t, strings.NewReader(r.stdout), "inspect", "--json", "-")
	require.Equal(t, 0, r2.code, r2.stderr)
	assert.Contains(t, r2.stdout, `"records": `+itoa(len(recs)+1))

	r = hubreplay(t, nil, "cat", "--type", "route,gap", path)
	require.Equal(t, 0, r.code, r.stderr)
	outLines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	assert.True(t, strings.HasPrefix(outLines[0], `{"type":"header"`))
	var want int
	for _, rec := range recs {
		if rec.Type() == trace.TypeRoute || rec.Type() == trace.TypeGap {
			want++
		}
	}
	assert.Len(t, outLines, want+1)
	for _, l := range outLines[1:] {
		assert.Regexp(t, `^\{"type":"(route|gap)"`, l)
	}

	r = hubreplay(t, nil, "cat", "--conn", "3", path)
	require.Equal(t, 0, r.code, r.stderr)
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
		assert.Contains(t, l, `"conn":3,`)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSlice(t *testing.T) {
	path, h, _ := sampleFile(t)
	out := filepath.Join(t.TempDir(), "peak.trace")
	r := hubreplay(t, nil, "slice", path, "--from", "15:52", "--to", "+5m", "--tz", "UTC", "-o", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^wrote .*peak.trace: \d+ records \(\d+ carried in at the start, \d+ connections closed at the end\), from 2026-11-03 15:52:00 UTC to 2026-11-03 15:55:00 UTC\n$`, r.stderr)

	rd, err := trace.Open(out)
	require.NoError(t, err)
	defer rd.Close()
	s, err := trace.Summarize(context.Background(), rd, nil)
	require.NoError(t, err)
	assert.Equal(t, h.Start.Add(2*time.Minute), s.Header.Start)
	assert.LessOrEqual(t, s.Duration, 3*time.Minute)
	assert.Greater(t, s.WS.Frames, uint64(0))
	// It counts records as inspect does.
	n := regexp.MustCompile(`: (\d+) records`).FindStringSubmatch(r.stderr)
	require.Len(t, n, 2, r.stderr)
	assert.Equal(t, strconv.FormatUint(s.Records, 10), n[1], "slice and inspect say how many records the slice holds")

	// It never overwrites without --force.
	before, err := os.ReadFile(out)
	require.NoError(t, err)
	r = hubreplay(t, nil, "slice", path, "--from", "+1m", "-o", out)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "already exists (give --force to replace it")
	r = hubreplay(t, nil, "slice", path, "--from", "+1m", "-o", t.TempDir())
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "it is a directory; give a file name", "a directory is not called a file")
	after, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, before, after)
	r = hubreplay(t, nil, "slice", path, "--from", "+1m", "-o", out, "--force")
	assert.Equal(t, 0, r.code, r.stderr)

	// An empty window writes nothing and says what the trace covers.
	none := filepath.Join(t.TempDir(), "none.trace")
	r = hubreplay(t, nil, "slice", path, "--from", "+3h", "-o", none)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "no records in [+3h0m0s, end)")
	assert.NoFileExists(t, none)
}

// A command line that does not make sense exits 2 everywhere: for report
// and compare, 1 means "regression", which CI acts on.
func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"report", "only-one.results"},
		{"report"},
		{"results"},
		{"results", "merge"},
		{"results", "merge", "a.results"}, // no -o
		{"compare", "extra"},
		{"verify"},
		{"version", "extra"},
		{"no-such-verb"},
		{"report", "a.results", "b.results", "--no-such-flag"},
	} {
		r := hubreplay(t, nil, args...)
		assert.Equal(t, 2, r.code, "%v: %s", args, r.stderr)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(r.stderr), "\n")+1, "one line: %q", r.stderr)
	}
}

// The developer's profiles: written whatever the command's outcome, as
// pprof's gzipped protocol buffers; a profile that cannot be written is a
// usage error before any work.
func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	cpu, mem := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "mem.prof")
	r := hubreplay(t, nil, "--cpuprofile", cpu, "--memprofile", mem, "inspect", filepath.Join(dir, "missing.trace"))
	assert.Equal(t, 2, r.code, "the command failed: %s", r.stderr)
	for _, p := range []string{cpu, mem} {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.Greater(t, len(b), 2)
		assert.Equal(t, []byte{0x1f, 0x8b}, b[:2], "%s is gzipped", p)
	}
	r = hubreplay(t, nil, "--cpuprofile", filepath.Join(dir, "no", "such", "dir"), "version")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "--cpuprofile")
}

// capture-signal (run by tap through an exec in the pod) says what it
// needs. (Not run with a signal here: a capture of another test could be
// running on this machine.)
func TestCaptureSignal(t *testing.T) {
	r := hubreplay(t, nil, "capture-signal", "TERM")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "give INT or USR1")
}
