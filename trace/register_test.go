package trace

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var registerNoted sync.Once // a registry is the process's: once, whatever -count says

type noted struct {
	TS   time.Duration `json:"ts"`
	Note string        `json:"note"`
}

func (*noted) Type() Type            { return "test_noted" }
func (n *noted) Time() time.Duration { return n.TS }

// A type another package registers is decoded once, into its own type,
// and written back as it was; one nobody registered stays Unknown.
func TestRegisteredTypesDecodeOnce(t *testing.T) {
	registerNoted.Do(func() { Register("test_noted", func() Record { return new(noted) }) })
	r, err := ParseJSON([]byte(`{"type":"test_noted","ts":5,"note":"hello"}`))
	require.NoError(t, err)
	assert.Equal(t, &noted{TS: 5, Note: "hello"}, r)
	line, err := AppendJSON(nil, r)
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"test_noted","ts":5,"note":"hello"}`, string(line))

	r, err = ParseJSON([]byte(`{"type":"test_other","ts":7}`))
	require.NoError(t, err)
	u, ok := r.(*Unknown)
	require.True(t, ok, "%T", r)
	assert.Equal(t, 7*time.Nanosecond, u.TS)

	_, err = ParseJSON([]byte(`{"type":"test_noted","ts":"soon"}`))
	assert.ErrorContains(t, err, "test_noted record", "a malformed record of a registered type is an error, naming the type")

	assert.Panics(t, func() { Register("test_noted", func() Record { return new(noted) }) }, "registered twice")
	assert.Panics(t, func() { Register(TypeHTTP, func() Record { return new(noted) }) }, "the trace's own")
}
