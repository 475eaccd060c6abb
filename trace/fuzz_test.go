package trace_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

var updateSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the committed fuzz seeds in testdata/fuzz")

// The seed corpus: a whole trace, the same cut short and without its end
// marker, its JSON lines plain and recompressed, and a trace in tiny frames.
func fuzzSeeds(t *testing.T) map[string][]byte {
	recs := oneOfEach()
	whole := writeAll(t, testHeader, &trace.WriterOptions{FlushRecords: 4}, recs)
	tiny := writeAll(t, testHeader, &trace.WriterOptions{FlushRecords: 1}, recs[:3])
	lines := decompressed(t, whole)
	return map[string][]byte{
		"whole":          whole,
		"tiny-frames":    tiny,
		"no-end-marker":  whole[:len(whole)-32],
		"cut-mid-frame":  whole[:len(whole)/2],
		"json-lines":     lines,
		"json-lines-cut": lines[:len(lines)/2],
		"zstd-stream":    zstdOf(t, lines),
		"header-only":    writeAll(t, testHeader, nil, nil),
	}
}

// TestUpdateFuzzSeeds writes the seeds as `go test fuzz v1` files when
// asked to (-update-fuzz-seeds); the files are committed, so `go test`
// runs them as regression cases every time.
func TestUpdateFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-fuzz-seeds to rewrite testdata/fuzz")
	}
	for target, seeds := range map[string]map[string][]byte{"FuzzReader": fuzzSeeds(t)} {
		dir := filepath.Join("testdata", "fuzz", target)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for name, data := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644))
		}
	}
	lines := decompressed(t, writeAll(t, testHeader, nil, oneOfEach()))
	dir := filepath.Join("testdata", "fuzz", "FuzzParseJSON")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for i, line := range bytes.Split(bytes.TrimSpace(lines), []byte{'\n'}) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", line)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-line-%02d", i)), []byte(body), 0o644))
	}
}

// FuzzReader: whatever the bytes, the reader neither panics nor loops;
// it ends in io.EOF, a not-a-trace error, or a damage report that counts
// exactly the records it returned.
func FuzzReader(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := trace.NewReader(bytes.NewReader(data), "fuzz.trace")
		if err != nil {
			if r != nil {
				t.Fatal("reader and error both returned")
			}
			return
		}
		defer r.Close()
		if r.Header() == nil {
			t.Fatal("a reader without a header")
		}
		n := uint64(0)
		for ; n <= uint64(len(data)); n++ { // a record takes at least a byte
			_, err = r.Next()
			if err != nil {
				break
			}
		}
		if err == nil {
			t.Fatalf("more records (%d) than bytes (%d)", n, len(data))
		}
		if err == io.EOF {
			return
		}
		var de *trace.DamageError
		if !errors.As(err, &de) {
			t.Fatalf("unexpected error kind %T: %v", err, err)
		}
		if de.Records != n {
			t.Fatalf("damage report counts %d records, the reader returned %d", de.Records, n)
		}
		if _, again := r.Next(); again != err {
			t.Fatalf("the error is not sticky: %v then %v", err, again)
		}
	})
}

// FuzzParseJSON: any line decodes or fails cleanly, and what decodes
// encodes to a line that decodes to the same record.
func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"type":"gap","ts":1,"conn":2,"dir":"c2s","bytes":3}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := trace.ParseJSON(line)
		if err != nil {
			return
		}
		out, err := trace.AppendJSON(nil, rec)
		if err != nil {
			return // e.g. an unknown record whose raw JSON was invalid is refused, not written
		}
		again, err := trace.ParseJSON(bytes.TrimSuffix(out, []byte{'\n'}))
		if err != nil {
			t.Fatalf("re-encoded line does not parse: %v\n%s", err, out)
		}
		out2, err := trace.AppendJSON(nil, again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", out, out2)
		}
	})
}
