package trace_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// framedTrace writes recs in frames of the given sizes and returns the
// file and, for each frame (the header's first), the offset where it ends
// and how many records the file holds up to there.
func framedTrace(t *testing.T, recs []trace.Record, sizes ...int) (data []byte, ends []int, counts []int) {
	t.Helper()
	var buf bytes.Buffer
	w, err := trace.NewWriter(&buf, testHeader, &trace.WriterOptions{FlushRecords: 1 << 20})
	require.NoError(t, err)
	ends, counts = []int{buf.Len()}, []int{1}
	i := 0
	for _, n := range sizes {
		for ; n > 0; n-- {
			require.NoError(t, w.Write(recs[i]))
			i++
		}
		require.NoError(t, w.Flush())
		ends, counts = append(ends, buf.Len()), append(counts, 1+i)
	}
	require.Equal(t, len(recs), i, "sizes must cover the records")
	require.NoError(t, w.Close())
	return buf.Bytes(), ends, counts
}

// Cut a trace at every byte: the reader returns exactly the records of
// the whole frames before the cut, in order, then says "truncated" and
// where. Never a panic, never fewer records, never an invented one.
func TestTruncationAtEveryOffset(t *testing.T) {
	recs := oneOfEach()
	data, ends, counts := framedTrace(t, recs, 4, 1, 8)
	h := testHeader
	want := append([]trace.Record{&h}, recs...)

	full, err := readAll(t, data)
	require.NoError(t, err)
	require.Equal(t, want, full)

	for cut := 0; cut < len(data); cut++ {
		got, err := readAll(t, data[:cut])
		require.Error(t, err, "cut at %d of %d read as a complete trace", cut, len(data))
		if cut < ends[0] {
			// Not even the header survived: the file says nothing.
			var de *trace.DamageError
			require.True(t, errors.Is(err, trace.ErrNotTrace) || (errors.As(err, &de) && de.Truncated),
				"cut at %d: %v", cut, err)
			require.Empty(t, got)
			continue
		}
		n := 0
		for i, end := range ends {
			if end <= cut {
				n = counts[i]
			}
		}
		require.Equal(t, want[:n], got, "cut at %d: records of the whole frames before it", cut)
		var de *trace.DamageError
		require.True(t, errors.As(err, &de), "cut at %d: %T %v", cut, err, err)
		require.True(t, de.Truncated, "cut at %d: %v", cut, err)
		require.Equal(t, uint64(n), de.Records, "cut at %d", cut)
		require.GreaterOrEqual(t, de.Offset, int64(0))
		require.LessOrEqual(t, de.Offset, int64(cut))
		require.Contains(t, err.Error(), "truncated at byte")
	}
}

// Flip every bit of a small trace in turn: never a panic, and a trace
// that reads without error reads exactly as written (the checksums see
// to that). Damage reports keep the records before it.
func TestBitFlipsNeverPanicOrLie(t *testing.T) {
	recs := oneOfEach()
	data, _, _ := framedTrace(t, recs, 6, 7)
	h := testHeader
	want := append([]trace.Record{&h}, recs...)
	damaged := make([]byte, len(data))
	for i := range data {
		for bit := range 8 {
			copy(damaged, data)
			damaged[i] ^= 1 << bit
			got, err := readAll(t, damaged)
			if err == nil {
				require.Equal(t, want, got, "flip at byte %d bit %d read clean but different", i, bit)
				continue
			}
			if len(got) > 0 {
				require.Equal(t, want[:len(got)], got, "flip at byte %d bit %d: records before the damage", i, bit)
			}
			require.NotContains(t, err.Error(), "\n")
		}
	}
}

func TestNotATrace(t *testing.T) {
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	cases := map[string]struct {
		data []byte
		says string
	}{
		"empty":      {nil, "empty"},
		"pcap":       {[]byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0}, "pcap packet capture"},
		"pcap-ns":    {[]byte{0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0}, "pcap packet capture"},
		"pcapng":     {[]byte{0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0}, "pcapng"},
		"gzip":       {gz([]byte("hello")), "gzip"},
		"text":       {[]byte("GET / HTTP/1.1\r\n"), "neither zstd nor JSON"},
		"json":       {[]byte(`{"hello":"world"}` + "\n"), "first line is not a trace record"},
		"other-json": {[]byte(`{"type":"gap","ts":1,"conn":1,"dir":"c2s","bytes":1}` + "\n"), `first record is "gap"`},
		"zstd-text":  {zstdOf(t, []byte("just text\n")), "first line is not a trace record"},
		"foreign-header": {[]byte(`{"type":"header","format":"someone-else","version":1}` + "\n"),
			`header names format "someone-else", not hubreplay-trace`},
		"results": {[]byte(`{"type":"header","format":"hubreplay-results","version":1}` + "\n"),
			"it is a hubreplay results file"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name+".trace")
			require.NoError(t, os.WriteFile(path, c.data, 0o644))
			_, err := trace.Open(path)
			require.ErrorIs(t, err, trace.ErrNotTrace)
			assert.Contains(t, err.Error(), c.says)
			assert.True(t, strings.HasPrefix(err.Error(), path+": not a hubreplay trace: "), err.Error())
			assert.NotContains(t, err.Error(), "\n")
		})
	}
	_, err := trace.Open(filepath.Join(t.TempDir(), "missing.trace"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestNewerVersionAsksForUpgrade(t *testing.T) {
	h := testHeader
	h.Version = trace.Version + 1
	data := writeAll(t, h, nil, nil)
	_, err := readAll(t, data)
	require.ErrorContains(t, err, "upgrade hubreplay")
}

func zstdOf(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// decompressed is what `zstd -dc` gives for a trace: its JSON lines.
func decompressed(t *testing.T, data []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	defer dec.Close()
	var out bytes.Buffer
	_, err = out.ReadFrom(dec)
	require.NoError(t, err)
	return out.Bytes()
}

// The file decompresses with any zstd decoder to plain JSON lines, and
// those lines, plain or recompressed by someone else, read as the same
// trace: operators may keep traces through standard tools.
func TestStandardToolsReadTraces(t *testing.T) {
	recs := oneOfEach()
	data := writeAll(t, testHeader, &trace.WriterOptions{FlushRecords: 3}, recs)
	h := testHeader
	want := append([]trace.Record{&h}, recs...)

	lines := decompressed(t, data)
	assert.Equal(t, len(want), bytes.Count(lines, []byte{'\n'}))
	assert.True(t, bytes.HasPrefix(lines, []byte(`{"type":"header","format":"hubreplay-trace","version":1,`)), "%.80s", lines)

	got, err := readAll(t, lines)
	require.NoError(t, err, "plain JSON lines")
	assert.Equal(t, want, got)

	got, err = readAll(t, zstdOf(t, lines))
	require.NoError(t, err, "recompressed as one zstd frame")
	assert.Equal(t, want, got)

	// A plain-lines trace cut mid-line reports the cut, keeps what came before.
	got, err = readAll(t, lines[:len(lines)-5])
	var de *trace.DamageError
	require.ErrorAs(t, err, &de)
	assert.True(t, de.Truncated, "%v", err)
	assert.Contains(t, err.Error(), "ends inside line 14")
	assert.Equal(t, want[:len(want)-1], got)

	// So does a recompressed stream cut short: whole lines only, then the cut.
	z := zstdOf(t, lines)
	for _, cut := range []int{len(z) - 1, len(z) - 9, len(z) / 2} {
		got, err = readAll(t, z[:cut])
		require.Error(t, err, "cut at %d", cut)
		if len(got) > 0 {
			assert.Equal(t, want[:len(got)], got, "cut at %d", cut)
		}
		require.ErrorAs(t, err, &de, "cut at %d", cut)
		assert.True(t, de.Truncated, "cut at %d: %v", cut, err)
		assert.NotContains(t, err.Error(), "\n")
	}

	zstdBin, err := exec.LookPath("zstd")
	if err != nil {
		t.Skip("zstd command not installed (.ci/run installs it): skipping the check with the real zstd tool")
	}
	cmd := exec.Command(zstdBin, "-dc")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	require.NoError(t, err, "zstd -dc on a trace")
	assert.Equal(t, lines, out)

	// And a file the writer never closed is still readable by zstd up to its last frame.
	cmd = exec.Command(zstdBin, "-dc")
	cmd.Stdin = bytes.NewReader(data[:len(data)-32]) // the end marker is 32 bytes
	out, err = cmd.Output()
	require.NoError(t, err, "zstd -dc on a trace without its end marker")
	assert.Equal(t, lines, out)
}

func TestCreateRefusesToOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peak.trace")
	w, err := trace.Create(path, testHeader, nil)
	require.NoError(t, err)
	require.NoError(t, w.Write(&trace.Gap{TS: 1, Conn: 1, Dir: trace.ClientToServer, Bytes: 1}))
	require.NoError(t, w.Close())
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	_, err = trace.Create(path, testHeader, nil)
	require.ErrorIs(t, err, os.ErrExist)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "a refused Create must not touch the file")

	w, err = trace.Create(path, testHeader, &trace.WriterOptions{Overwrite: true, Sync: true})
	require.NoError(t, err)
	require.NoError(t, w.Close())
	r, err := trace.Open(path)
	require.NoError(t, err)
	defer r.Close()
	_, err = r.Next() // header
	require.NoError(t, err)
	_, err = r.Next()
	assert.Equal(t, "EOF", err.Error(), "the overwritten trace holds only its header")
}

// A full disk: the write error is reported, and everything flushed before
// it still reads back, with the cut reported as truncation.
func TestWriteErrorKeepsWhatWasFlushed(t *testing.T) {
	fw := &failingWriter{limit: -1}
	w, err := trace.NewWriter(fw, testHeader, &trace.WriterOptions{FlushRecords: 2})
	require.NoError(t, err)
	recs := oneOfEach()
	require.NoError(t, w.Write(recs[0]))
	require.NoError(t, w.Write(recs[1])) // flushed: frame 2
	fw.limit = fw.buf.Len() + 20         // the disk fills inside the next frame
	require.NoError(t, w.Write(recs[2]))
	err = w.Write(recs[3])
	require.ErrorContains(t, err, "no space left")
	require.ErrorContains(t, w.Write(recs[4]), "no space left", "the error sticks")
	require.ErrorContains(t, w.Close(), "no space left")

	got, rerr := readAll(t, fw.buf.Bytes())
	h := testHeader
	assert.Equal(t, []trace.Record{&h, recs[0], recs[1]}, got)
	var de *trace.DamageError
	require.ErrorAs(t, rerr, &de)
	assert.True(t, de.Truncated)
}

type failingWriter struct {
	buf   bytes.Buffer
	limit int // bytes accepted in all; -1 for no limit
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.limit >= 0 && f.buf.Len()+len(p) > f.limit {
		n := f.limit - f.buf.Len()
		f.buf.Write(p[:n])
		return n, errors.New("write /data/peak.trace: no space left on device")
	}
	return f.buf.Write(p)
}
