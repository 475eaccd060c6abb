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

// A kind first met inside another error's dump (chp@4.6.2's EPIPE is the
// "code: 'EPIPE'" of a logged error) is shown from that error's first
// line: the "code" line alone says nothing.
func TestFirstLogLineInsideAStack(t *testing.T) {
	b := newLogBook()
	for _, l := range []string{
		"21:58:50.428 [ConfigProxy] error: 503 GET /user/u-1/api/kernels/k/channels Error: This socket has been ended by the other party",
		"    at genericNodeError (node:internal/errors:984:15)",
		"    at Socket.writeAfterFIN [as write] (node:net:566:14)",
		"  code: 'EPIPE'",
		"}",
		"21:58:51.000 [ConfigProxy] info: 200 GET /api/routes",
	} {
		b.add(l)
	}
	got := b.newFirsts()
	want := []string{
		"21:58:50.428 [ConfigProxy] error: 503 GET /user/u-1/api/kernels/k/channels Error: This socket has been ended by the other party",
		"    at genericNodeError (node:internal/errors:984:15)",
		"    at Socket.writeAfterFIN [as write] (node:net:566:14)",
		"  code: 'EPIPE'",
		"}",
	}
	assert.Equal(t, want, got["error"])
	assert.Equal(t, want, got["epipe"], "the EPIPE's error, from its first line")
}
