package wire

import (
	"bytes"
	"crypto/rand"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	var stream bytes.Buffer
	w := NewWriter(&stream)
	var want []byte
	for _, n := range []int{1, 100, 3 << 20, 17, 0, 4096} { // a 3 MiB frame is one long line
		p := make([]byte, n)
		_, _ = rand.Read(p)
		_, err := w.Write(p)
		require.NoError(t, err)
		want = append(want, p...)
	}
	assert.Equal(t, 5, strings.Count(stream.String(), "\n"), "a line a write")
	got, err := io.ReadAll(NewReader(&stream))
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestCutAndForeignLines(t *testing.T) {
	var stream bytes.Buffer
	_, _ = NewWriter(&stream).Write([]byte("first frame"))
	_, _ = NewWriter(&stream).Write([]byte("second frame"))
	cut := stream.Bytes()[:stream.Len()-5]
	got, err := io.ReadAll(NewReader(bytes.NewReader(cut)))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "a stream cut mid-line says so")
	assert.Equal(t, "first frame", string(got), "and keeps the whole lines before it")

	foreign := "Zmlyc3Q=\nWARNING: something the runtime said\n"
	got, err = io.ReadAll(NewReader(strings.NewReader(foreign)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 2")
	assert.Equal(t, "first", string(got))
}

// FuzzReader: whatever the log stream holds, the reader returns bytes or
// an error, never panics, and what a Writer wrote comes back.
func FuzzReader(f *testing.F) {
	f.Add([]byte("Zmlyc3Q=\n"), []byte("x"))
	f.Add([]byte("not base64 at all\n"), []byte{})
	f.Add([]byte("Zmlyc3Q"), []byte("\n\r\n"))
	f.Add([]byte("\r\n\n=\n"), []byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, stream, payload []byte) {
		_, _ = io.ReadAll(NewReader(bytes.NewReader(stream)))
		var b bytes.Buffer
		_, _ = NewWriter(&b).Write(payload)
		got, err := io.ReadAll(NewReader(&b))
		require.NoError(t, err)
		assert.Equal(t, len(payload), len(got))
		assert.True(t, bytes.Equal(payload, got))
	})
}

// A flight recorder's dumps follow one another in one stream.
func TestSeveralTraces(t *testing.T) {
	var stream bytes.Buffer
	w := NewWriter(&stream)
	_, _ = w.Write([]byte("first trace"))
	require.NoError(t, w.EndTrace())
	_, _ = w.Write([]byte("second "))
	_, _ = w.Write([]byte("trace"))
	require.NoError(t, w.EndTrace())
	r := NewReader(&stream)
	var got []string
	for {
		b, err := io.ReadAll(r)
		require.NoError(t, err)
		got = append(got, string(b))
		if !r.Next() {
			break
		}
	}
	assert.Equal(t, []string{"first trace", "second trace"}, got)
}
