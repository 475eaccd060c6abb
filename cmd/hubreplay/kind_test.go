package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/hubreplay/hubreplay/compare"
	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/kindcluster"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

// Without a Docker engine every kind verb says so in one line, exit 2.
func TestKindWithoutEngine(t *testing.T) {
	if _, ok := proxy.DockerEngine(); ok {
		t.Skip("a Docker engine runs here; kindcluster's lifecycle test covers it")
	}
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "docker.sock"))
	for _, verb := range [][]string{{"kind", "up", "--workdir", t.TempDir()}, {"kind", "status"}, {"kind", "down"}, {"kind", "image", "--src", "../.."}} {
		r := hubreplay(t, nil, verb...)
		assert.Equal(t, 2, r.code, "%v: %s", verb, r.stderr)
		errLines := errorLines(r.stderr)
		if assert.Len(t, errLines, 1, "one error line: %q", r.stderr) {
			assert.Contains(t, errLines[0], "no Docker engine answers", verb)
		}
	}
	r := hubreplay(t, nil, "kind", "image", "--tag", "nocolon")
	assert.Equal(t, 2, r.code)
}

func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "hubreplay: ") {
			out = append(out, l)
		}
	}
	return out
}

// compare --backend kind needs Docker; here it says so and the comparison
// fails as a comparison (exit status 2), before any run.
func TestCompareKindBackendWithoutEngine(t *testing.T) {
	if _, ok := proxy.DockerEngine(); ok {
		t.Skip("a Docker engine runs here")
	}
	dir := t.TempDir()
	peak := filepath.Join(dir, "peak.trace")
	r := hubreplay(t, nil, "generate", "lecture-peak", "--users", "5", "--duration", "5m", "-o", peak)
	assert.Equal(t, 0, r.code, r.stderr)
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(dir, "docker.sock"))
	r = hubreplay(t, nil, "compare", "--backend", "kind", "--trace", peak, "--a", "chp@4.5.6", "--b", "chp@5.3.0", "--kind-workdir", dir, "-o", filepath.Join(dir, "out"))
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "no Docker engine answers")
	assert.NoFileExists(t, filepath.Join(dir, "out", "A.results"))
	r = hubreplay(t, nil, "compare", "--backend", "cloud", "--trace", peak, "--a", "chp@4.5.6", "--b", "chp@5.3.0")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "local, kind or k8s")
}

// The kind backend end to end, where Docker runs (the CI workflow's docker job): a kind
// cluster, hubreplay's image built from this tree, CHP 4.5.6 against 5.3.0
// from the project's images, two replay shards each.
func TestCompareOnKind(t *testing.T) {
	host, ok := proxy.DockerEngine()
	if !ok {
		testenv.NoDocker(t, fmt.Sprintf("no Docker engine answers at %s: kind cannot run here (the CI workflow's Docker job runs this test)", host))
	}
	if testing.Short() {
		t.Skip("a kind cluster takes minutes")
	}
	dir := t.TempDir()
	peak := filepath.Join(dir, "peak.trace")
	r := hubreplay(t, nil, "generate", "lecture-peak", "--users", "20", "--duration", "5m", "-o", peak)
	require.Equal(t, 0, r.code, r.stderr)
	out := filepath.Join(dir, "out")
	r = hubreplay(t, nil, "compare", "--backend", "kind", "--kind-name", "hubreplay-test", "--kind-workdir", filepath.Join(dir, "work"),
		"--kind-build", "../..", "--shards", "2", "--trace", peak, "--a", "chp@4.5.6", "--b", "chp@5.3.0", "--speed", "10", "-o", out)
	require.NotEqual(t, 2, r.code, "the comparison ran: %s", r.stderr)
	var rep compare.Report
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rep))
	require.Len(t, rep.Runs, 2)
	for _, f := range rep.Runs {
		assert.Positive(t, f.Requests)
		assert.Less(t, f.ErrorRate, 0.01, "%s: %v", f.Role, f.Errors)
		if assert.NotNil(t, f.Proxy, "samples from the kubelet") {
			assert.Positive(t, f.Proxy.RSSPeak)
		}
	}
	r = hubreplay(t, nil, "kind", "status", "--name", "hubreplay-test")
	assert.Contains(t, r.stdout, "none", "the cluster made for the comparison is gone")
}

// The command lines the kind backend gives its pods are ones this CLI
// accepts: after Kubernetes expands $(POD_IP) and $(JOB_COMPLETION_INDEX),
// every flag exists and every value parses, as they would in the pods.
func TestPodCommandLinesParse(t *testing.T) {
	play := &playFlags{speed: "10", users: "2x", jitter: 90 * time.Second, seed: 3, from: "+1m", to: "+4m"}
	st := &kindcluster.Staging{Namespace: "hubreplay-b", Image: "hubreplay:dev", Candidate: "chp:4.5.6", Token: "t", Values: kindcluster.DefaultValues(),
		Trace: "peak.trace", Results: "results/b", Shards: 3, Play: play.args(), StartAt: time.Now(), CheckInterval: time.Minute}
	objs, err := st.Build()
	require.NoError(t, err)
	env := map[string]string{"POD_IP": "10.244.0.7", "JOB_COMPLETION_INDEX": "2"}
	for _, c := range []corev1.Container{objs.Fixtures.Spec.Template.Spec.Containers[0], objs.Replay.Spec.Template.Spec.Containers[0]} {
		args := make([]string, len(c.Args))
		for i, a := range c.Args {
			for k, v := range env {
				a = strings.ReplaceAll(a, "$("+k+")", v)
			}
			args[i] = a
		}
		root := newRoot(strings.NewReader(""), io.Discard, io.Discard)
		cmd, rest, err := root.Find(args)
		require.NoError(t, err, "%v", args)
		require.NoError(t, cmd.ParseFlags(rest), "%s: %v", cmd.Name(), args)
		assert.Empty(t, cmd.Flags().Args(), "no stray arguments")
		// What the flags say, read as the command reads them: the same play
		// for the fixtures and every shard.
		assert.Equal(t, []string{"10", "2x", "+1m", "+4m"}, []string{flag(t, cmd, "speed"), flag(t, cmd, "users"), flag(t, cmd, "from"), flag(t, cmd, "to")})
		assert.Equal(t, "1m30s", flag(t, cmd, "jitter"))
		assert.Equal(t, "/hubreplay/peak.trace", flag(t, cmd, "trace"))
		_, err = time.Parse(time.RFC3339Nano, flag(t, cmd, "start-at"))
		assert.NoError(t, err)
		switch cmd.Name() {
		case "serve":
			assert.Equal(t, "10.244.0.7", flag(t, cmd, "advertise"))
			assert.Equal(t, "http://proxy-api:8001", flag(t, cmd, "api"))
		case "replay":
			sh, err := replay.ParseShard(flag(t, cmd, "shard"))
			require.NoError(t, err)
			assert.Equal(t, replay.Shard{Index: 2, Count: 3}, sh)
			assert.Equal(t, "false", flag(t, cmd, "fixtures"))
			assert.Equal(t, "/hubreplay/results/b/shard-2.results", flag(t, cmd, "output"))
		default:
			t.Errorf("unexpected command %s", cmd.Name())
		}
	}
}

func flag(t *testing.T, cmd *cobra.Command, name string) string {
	t.Helper()
	f := cmd.Flags().Lookup(name)
	require.NotNil(t, f, "%s has --%s", cmd.Name(), name)
	return f.Value.String()
}
