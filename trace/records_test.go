package trace_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// A trace read once into memory gives what a Reader gives, record for
// record and in the same order (the record numbers replay and the
// fixtures agree on), header first; its compacted copies read the same.
func TestReadAllGivesWhatTheReaderGives(t *testing.T) {
	recs := append(oneOfEach(), oneOfEach()...)
	data := writeAll(t, testHeader, nil, recs)
	want, err := readAll(t, data)
	require.NoError(t, err)

	r, err := trace.NewReader(bytes.NewReader(data), "mem")
	require.NoError(t, err)
	all, err := trace.ReadAll(context.Background(), r, nil)
	require.NoError(t, err)
	assert.Equal(t, testHeader.Note, all.Header().Note)
	var got []trace.Record
	var offsets []int64
	require.NoError(t, all.Each(context.Background(), func(off int64) { offsets = append(offsets, off) }, func(rec trace.Record) error {
		got = append(got, rec)
		return nil
	}))
	require.Equal(t, len(want), all.Len(), "the records and the header")
	assert.IsType(t, &trace.Header{}, got[0])
	assert.Equal(t, want, got)
	assert.Equal(t, []int64{0}, offsets, "progress from the start")

	// Twice: the records are there to be gone through again.
	n := 0
	require.NoError(t, all.Each(context.Background(), nil, func(trace.Record) error { n++; return nil }))
	assert.Equal(t, all.Len(), n)

	stop := errors.New("stop")
	assert.ErrorIs(t, all.Each(context.Background(), nil, func(trace.Record) error { return stop }), stop)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, all.Each(ctx, nil, func(trace.Record) error { return nil }), context.Canceled)
}

// A damaged trace is an error, not the part before the damage passed off
// as the whole.
func TestReadAllOfADamagedTrace(t *testing.T) {
	data := writeAll(t, testHeader, &trace.WriterOptions{FlushRecords: 2}, oneOfEach())
	r, err := trace.NewReader(bytes.NewReader(data[:len(data)*2/3]), "cut.trace")
	require.NoError(t, err)
	_, err = trace.ReadAll(context.Background(), r, nil)
	var de *trace.DamageError
	require.ErrorAs(t, err, &de)
	assert.True(t, de.Truncated)
}
