package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestProgressOnlyOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	assert.Nil(t, newProgress(&buf, filepath.Join(t.TempDir(), "x.trace"), "reading"), "not a terminal: silent")
	var p *progress // a nil progress is silent, not a crash
	p.update(10)
	p.done()

	p = &progress{w: &buf, total: 200 << 20, what: "reading big.trace"}
	p.update(50 << 20)
	p.update(60 << 20) // too soon after the last: not shown
	p.done()
	assert.Equal(t, "\rreading big.trace:  25% of 200 MB\r\033[K", buf.String())
}
