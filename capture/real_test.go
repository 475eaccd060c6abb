package capture

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/capture/anonymize"
	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/trace"
)

// captureFile runs a capture of a file into memory, raw, and returns the
// trace's start time and records.
func captureFile(t *testing.T, path string, o Options) (time.Time, []trace.Record, Counters) {
	t.Helper()
	src, err := OpenFile(path)
	require.NoError(t, err)
	defer src.Close()
	w := &memWriter{}
	var start time.Time
	o.Raw = o.Scrub == nil
	c, err := Run(context.Background(), src, func(s time.Time) (RecordWriter, error) { start = s; return w, nil }, o)
	require.NoError(t, err)
	return start, w.recs, c
}

// checkWorkload compares a trace with what the client did: every request,
// status, body size and WebSocket frame accounted for, at times inside the
// client's run.
func checkWorkload(t *testing.T, w *testenv.Workload, start time.Time, recs []trace.Record) {
	t.Helper()
	assertOrderRule(t, recs)
	exchanges := ofType[*trace.HTTP](recs)
	byTarget := map[string][]*trace.HTTP{}
	for _, e := range exchanges {
		byTarget[e.Req.Method+" "+e.Req.Target] = append(byTarget[e.Req.Method+" "+e.Req.Target], e)
	}
	assert.Len(t, exchanges, len(w.Exchanges), "one record for each exchange the client made")
	for _, want := range w.Exchanges {
		got := byTarget[want.Method+" "+want.Target]
		if !assert.Len(t, got, 1, "%s %s", want.Method, want.Target) {
			continue
		}
		e := got[0]
		require.NotNil(t, e.Resp, "%s %s has a response", want.Method, want.Target)
		assert.Equal(t, want.Status, e.Resp.Status, "%s %s", want.Method, want.Target)
		if want.Incomplete {
			assert.True(t, e.Resp.Incomplete, "the reset response is marked incomplete")
			assert.Greater(t, e.Resp.BodySize, int64(40000), "it counts what the client read")
		} else {
			assert.Equal(t, want.Size, e.Resp.BodySize, "%s %s body size", want.Method, want.Target)
			assert.False(t, e.Resp.Incomplete, "%s %s", want.Method, want.Target)
		}
		at := start.Add(e.TS)
		assert.True(t, !at.Before(w.Start.Add(-time.Second)) && !at.After(w.End.Add(time.Second)), "%s at %s is outside the client's run %s..%s", want.Target, at, w.Start, w.End)
		assert.LessOrEqual(t, e.TS, e.Req.End)
		assert.LessOrEqual(t, e.Req.End, e.Resp.Start)
		assert.LessOrEqual(t, e.Resp.Start, e.Resp.End)
	}

	var frames []testenv.Frame
	for _, f := range ofType[*trace.WSFrame](recs) {
		frames = append(frames, testenv.Frame{Dir: string(f.Dir), Op: ws.OpCode(f.Op), Len: f.Len})
		if f.Dir == trace.ClientToServer {
			assert.True(t, f.Masked)
		}
	}
	assert.Equal(t, w.Frames, frames, "every WebSocket frame, in order, with its length")

	closes := ofType[*trace.ConnClose](recs)
	opens := ofType[*trace.ConnOpen](recs)
	assert.Equal(t, len(opens), len(closes))
	var rst int
	for _, c := range closes {
		if c.How == trace.CloseRST {
			rst++
			assert.Equal(t, trace.SideClient, c.By)
		} else {
			assert.Equal(t, trace.CloseFIN, c.How)
		}
	}
	assert.Equal(t, 1, rst, "the client that vanished mid-response reset its connection")
	for _, o := range opens {
		assert.False(t, o.Mid)
	}
}

// run runs a command and returns its standard output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), stderr.String())
	return string(out)
}

// countValues counts tshark field values: one line per packet, several
// values in a packet separated by commas.
func countValues(out string) int {
	n := 0
	for _, l := range strings.Fields(out) {
		n += len(strings.Split(l, ","))
	}
	return n
}

func TestRealLoopbackCaptures(t *testing.T) {
	dir := t.TempDir()
	addr, port := testenv.Serve(t)
	filter := fmt.Sprintf("tcp port %d", port)
	lo := testenv.Tcpdump(t, filepath.Join(dir, "lo.pcap"), filter)
	anyIf := testenv.Tcpdump(t, filepath.Join(dir, "any-sll2.pcap"), filter, "-i", "any", "-y", "LINUX_SLL2")
	w := testenv.Drive(t, addr, true)
	lo.Stop(t)
	anyIf.Stop(t)

	// The same packets as pcapng, and gzip'd, as operators bring them.
	testenv.Need(t, "editcap")
	run(t, "editcap", "-F", "pcapng", lo.Path, filepath.Join(dir, "lo.pcapng"))
	run(t, "sh", "-c", "gzip -c "+lo.Path+" > "+filepath.Join(dir, "lo.pcap.gz"))

	files := []string{"lo.pcap", "any-sll2.pcap", "lo.pcapng", "lo.pcap.gz"}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			start, recs, c := captureFile(t, filepath.Join(dir, f), Options{Ports: []uint16{uint16(port)}})
			assert.Zero(t, c.Gaps, "a loopback capture loses nothing")
			assert.Zero(t, c.ParseErrors)
			checkWorkload(t, w, start, recs)
			if f == "any-sll2.pcap" {
				src, err := OpenFile(filepath.Join(dir, f))
				require.NoError(t, err)
				_, _, link, err := src.ReadPacket()
				require.NoError(t, err)
				src.Close()
				assert.Equal(t, "Linux SLL2", link.String())
			}
		})
	}

	t.Run("tshark agrees", func(t *testing.T) {
		testenv.Need(t, "tshark")
		_, recs, _ := captureFile(t, lo.Path, Options{Ports: []uint16{uint16(port)}})
		// Loopback packets from two CPUs can reach the file slightly out of
		// order; tshark reassembles those only when asked to.
		decode := fmt.Sprintf("tcp.port==%d,http", port)
		requests := run(t, "tshark", "-n", "-o", "tcp.reassemble_out_of_order:TRUE", "-r", lo.Path, "-d", decode, "-Y", "http.request", "-T", "fields", "-e", "http.request.method")
		assert.Equal(t, len(ofType[*trace.HTTP](recs)), countValues(requests), "HTTP requests")
		responses := run(t, "tshark", "-n", "-o", "tcp.reassemble_out_of_order:TRUE", "-r", lo.Path, "-d", decode, "-Y", "http.response", "-T", "fields", "-e", "http.response.code")
		var got int
		for _, e := range ofType[*trace.HTTP](recs) {
			if e.Resp != nil && !e.Resp.Incomplete {
				got++
			}
		}
		assert.Equal(t, got, countValues(responses)-strings.Count(responses, "100"), "whole HTTP responses (tshark also lists 100 Continue): tshark says %q", responses)
		opcodes := run(t, "tshark", "-n", "-o", "tcp.reassemble_out_of_order:TRUE", "-r", lo.Path, "-d", decode, "-Y", "websocket", "-T", "fields", "-e", "websocket.opcode")
		assert.Equal(t, len(ofType[*trace.WSFrame](recs)), countValues(opcodes), "WebSocket frames")
	})

	t.Run("anonymized trace holds none of the secrets", func(t *testing.T) {
		anon, err := anonymize.New(anonymize.RandomKey(), anonymize.DefaultRules())
		require.NoError(t, err)
		for _, mode := range []string{"anonymized", "raw"} {
			path := filepath.Join(dir, mode+".trace")
			src, err := OpenFile(lo.Path)
			require.NoError(t, err)
			o := Options{Ports: []uint16{uint16(port)}, Scrub: anon}
			if mode == "raw" {
				o = Options{Ports: []uint16{uint16(port)}, Raw: true}
			}
			var tw *trace.Writer
			_, err = Run(context.Background(), src, func(s time.Time) (RecordWriter, error) {
				tw, err = trace.Create(path, trace.Header{Format: trace.FormatName, Version: trace.Version, Start: s}, nil)
				return tw, err
			}, o)
			require.NoError(t, err)
			require.NoError(t, tw.Close())
			src.Close()
			r, err := trace.Open(path)
			require.NoError(t, err)
			v, err := anonymize.Verify(context.Background(), r, testenv.WireSecrets, nil)
			require.NoError(t, err)
			r.Close()
			if mode == "anonymized" {
				for _, f := range v.Findings {
					t.Errorf("leak: %s", f)
				}
				continue
			}
			found := map[string]bool{}
			for _, f := range v.Findings {
				found[f.What] = true
			}
			for i := range testenv.WireSecrets {
				assert.True(t, found[fmt.Sprintf("listed secret %d", i+1)], "verify finds secret %d in the raw trace", i+1)
			}
		}
	})
}

func TestNotACaptureFile(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"text.pcap":  []byte("hello, this is not a capture\n"),
		"empty.pcap": nil,
		"trace.pcap": {0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4},
	} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, content, 0o600))
		_, err := OpenFile(p)
		var nc *NotCaptureError
		require.ErrorAs(t, err, &nc, name)
		assert.Contains(t, err.Error(), name)
		assert.NotContains(t, err.Error(), "\n")
	}
}
