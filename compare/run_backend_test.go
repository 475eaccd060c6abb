package compare_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/compare"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

// recordingBackend stands in for a cluster (none runs here): it writes
// results files with the candidate's records through CandidateWriter, as
// the kind backend does, and remembers what it was asked.
type recordingBackend struct {
	asked []string
	fail  string
}

func (b *recordingBackend) RunCandidate(ctx context.Context, role string, spec proxy.Spec, results string) error {
	b.asked = append(b.asked, role+" "+spec.Raw+" "+filepath.Base(results))
	if role == b.fail {
		return errors.New("the cluster refused")
	}
	w, err := replay.CreateResults(results, "test", false)
	if err != nil {
		return err
	}
	start := time.Now()
	_ = w.Write(&replay.Run{Trace: "peak.trace", Speed: 10, Requests: 2, Length: time.Minute})
	for i := range 2 {
		_ = w.Write(&replay.Request{Sent: time.Duration(i) * time.Second, Record: int64(i), Method: "GET", Target: "/hub/home", Status: 200, Want: 200, TTLB: time.Millisecond})
	}
	cw := &compare.CandidateWriter{W: w, Start: start}
	rss := int64(50 << 20)
	if spec.Raw == "chp@5.3.0" {
		rss = 200 << 20 // B keeps 150 MiB more
	}
	cw.Sample(proxy.Sample{At: start, Up: true, RSS: 50 << 20, FDs: 20, SocketFDs: 3})
	cw.Sample(proxy.Sample{At: start.Add(time.Minute), Up: true, RSS: rss, FDs: 20, SocketFDs: 3})
	cw.Exit(proxy.Exit{At: start.Add(30 * time.Second), Cause: "OOM-killed at the memory limit", OOM: true})
	cw.Candidate(role, spec.Raw, "x", "kind", "1Gi", time.Second)
	_ = w.Write(&replay.End{TS: time.Minute})
	return errors.Join(cw.Err(), w.Close())
}

func TestBackendRunsEveryCandidate(t *testing.T) {
	dir := t.TempDir()
	b := &recordingBackend{}
	o := compare.Options{Plan: &replay.Plan{}, A: spec(t, "chp@4.5.6"), B: spec(t, "chp@5.3.0"), NoiseRuns: 1, Dir: dir, Backend: b}
	files, err := compare.Run(context.Background(), o)
	require.NoError(t, err)
	assert.Equal(t, []string{"A chp@4.5.6 A.results", "B chp@5.3.0 B.results", "A' chp@4.5.6 A-noise.results"}, b.asked, "A, B, then A again")
	rep, err := compare.Analyze(context.Background(), compare.DefaultThresholds(), files...)
	require.NoError(t, err)
	assert.True(t, rep.Verdict.Regression)
	assert.Contains(t, rep.Verdict.Reasons[0], "resident memory grew by 150.0 MiB")
	assert.Equal(t, 1, rep.B().Restarts, "the kubelet's restarts count as exits")
	assert.Equal(t, "OOM-killed at the memory limit", rep.B().Exits[0].Cause)
	assert.False(t, rep.B().Proxy.TCPStates, "a pod's samples say no TCP states")
	var md strings.Builder
	require.NoError(t, rep.WriteMarkdown(&md))
	assert.Contains(t, md.String(), "| CLOSE_WAIT sockets: start / peak / after idle | not measured |")

	b = &recordingBackend{fail: "B"}
	o.Dir, o.Backend = t.TempDir(), b
	files, err = compare.Run(context.Background(), o)
	require.ErrorContains(t, err, "run B (chp@5.3.0): the cluster refused")
	assert.Len(t, files, 1, "A's results are kept")
}

// Files are put in role order: the first that says A, the first that says
// B, then the rest as noise runs, whatever order they are given in.
func TestAnalyzeOrdersByRole(t *testing.T) {
	dir := t.TempDir()
	b := &recordingBackend{}
	o := compare.Options{Plan: &replay.Plan{}, A: spec(t, "chp@4.5.6"), B: spec(t, "chp@5.3.0"), Dir: dir, Backend: b}
	files, err := compare.Run(context.Background(), o)
	require.NoError(t, err)
	rep, err := compare.Analyze(context.Background(), compare.DefaultThresholds(), files[1], files[0], files[0])
	require.NoError(t, err)
	var roles, specs []string
	for _, f := range rep.Runs {
		roles, specs = append(roles, f.Role), append(specs, f.Spec)
	}
	assert.Equal(t, []string{"A", "B", "A'"}, roles)
	assert.Equal(t, []string{"chp@4.5.6", "chp@5.3.0", "chp@4.5.6"}, specs)
}
