package compare

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/replay"
)

// planAt is a plan of 100 requests a trace second for a minute, at speed.
func planAt(speed float64) *replay.Plan {
	p := &replay.Plan{Opts: replay.Options{Speed: speed}}
	c := &replay.Conn{}
	for i := range 6000 {
		c.Steps = append(c.Steps, &replay.Step{At: time.Duration(i) * 10 * time.Millisecond})
	}
	p.Conns = []*replay.Conn{c}
	return p
}

// compare says before a run when the plan asks for more than this
// machine's harness held, from what earlier runs recorded.
func TestCapacityAdvice(t *testing.T) {
	assert.Equal(t, 100.0, planAt(1).PeakRate())
	assert.Equal(t, 50.0, planAt(0.5).PeakRate(), "at half speed a trace second's requests spread over two")
	assert.Equal(t, 1000.0, planAt(10).PeakRate(), "at 10× ten trace seconds fall in one wall second")

	path := filepath.Join(t.TempDir(), "harness.json")
	c, err := LoadCapacity(path)
	require.NoError(t, err)
	assert.Empty(t, c.Advise(planAt(10)), "nothing known: nothing to say")

	held := &Report{Runs: []*Figures{{Harness: &Harness{Samples: 30}}}}
	sat := &Report{Runs: []*Figures{{Harness: &Harness{Samples: 30, Saturated: true}}}}
	require.NoError(t, c.Record(planAt(2), held))
	require.NoError(t, c.Record(planAt(8), sat))

	c, err = LoadCapacity(path)
	require.NoError(t, err)
	require.Len(t, c.Runs, 2, "kept in the file")
	assert.Empty(t, c.Advise(planAt(5)), "500 a second: under what saturated it")
	advice := c.Advise(planAt(10))
	assert.Contains(t, advice, "at 10x this trace asks for up to 1000 requests a second")
	assert.Contains(t, advice, "runs asking for 800 or more saturated this machine's harness before")
	assert.Contains(t, advice, "--speed 2 stays under that")
}
