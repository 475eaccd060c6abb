package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The first line of each kind is kept with the stack trace after it, and
// handed to one sample only; later lines of the kind are only counted.
func TestFirstLogLinesKeepTheirStack(t *testing.T) {
	b := newLogBook()
	for _, l := range []string{
		"19:11:28.656 [ConfigProxy] error: Uncaught Exception: write EPIPE",
		"Error: write EPIPE",
		"    at afterWriteDispatched (node:internal/stream_base_commons:160:15)",
		"    at writeGeneric (node:internal/stream_base_commons:151:3)",
		"19:11:29.001 [ConfigProxy] info: 200 GET /api/routes",
		"19:11:30.002 [ConfigProxy] error: Uncaught Exception: write EPIPE",
		"    at somewhere (else.js:1:1)",
	} {
		b.add(l)
	}
	assert.Equal(t, int64(2), b.snapshot()["uncaught"])
	got := b.newFirsts()
	want := []string{
		"19:11:28.656 [ConfigProxy] error: Uncaught Exception: write EPIPE",
		"Error: write EPIPE",
		"    at afterWriteDispatched (node:internal/stream_base_commons:160:15)",
		"    at writeGeneric (node:internal/stream_base_commons:151:3)",
	}
	assert.Equal(t, want, got["uncaught"], "the line, the error's own line, its stack; not the next message")
	assert.Equal(t, want, got["epipe"])
	assert.Nil(t, b.newFirsts(), "each kind once")
}
