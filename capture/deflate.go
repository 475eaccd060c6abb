package capture

import (
	"bytes"
	"io"
	"strings"

	"github.com/klauspost/compress/flate"

	"github.com/hubreplay/hubreplay/capture/wsframe"
	"github.com/hubreplay/hubreplay/trace"
)

// permessage-deflate (RFC 7692): a compressed message has RSV1 on its
// first frame; its payloads together are a raw DEFLATE stream ending in a
// sync flush whose last four bytes (00 00 ff ff) were removed. With context
// takeover each message may refer back to the previous 32 KiB of output,
// so a capture can only decompress a message if it decompressed every
// earlier one of that direction.

const (
	windowSize     = 32 << 10
	maxCompressed  = 4 << 20 // compressed bytes held for one message
	maxDecompressd = 8 << 20 // decompressed bytes produced for one message
)

// Appending a sync-flush tail and an empty final stored block lets a
// DEFLATE reader end cleanly at io.EOF.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

type inflater struct {
	takeover   bool   // this direction keeps its compression context
	broken     bool   // context lost: later messages cannot be read
	dict       []byte // the last 32 KiB of output, with takeover
	compressed bool   // the message in progress is compressed
	tooBig     bool
	msg        []byte
	held       []*trace.WSFrame
}

// parseDeflate reads the extension a 101 response agreed on, for one
// direction; nil when permessage-deflate was not agreed.
func parseDeflate(ext string, dir trace.Dir) *inflater {
	for e := range strings.SplitSeq(ext, ",") {
		params := strings.Split(e, ";")
		if strings.TrimSpace(params[0]) != "permessage-deflate" {
			continue
		}
		in := &inflater{takeover: true}
		noTakeover := "server_no_context_takeover"
		if dir == trace.ClientToServer {
			noTakeover = "client_no_context_takeover"
		}
		for _, p := range params[1:] {
			name, _, _ := strings.Cut(strings.TrimSpace(p), "=")
			if name == noTakeover {
				in.takeover = false
			}
		}
		return in
	}
	return nil
}

// lose marks the context lost (bytes went missing).
func (in *inflater) lose() {
	in.tooBig = true
	if in.takeover {
		in.broken = true
	}
}

// frame takes a frame's record and returns the records ready to write:
// frames of a compressed message are held until its last frame, so that
// they can all say whether it was inflated.
func (in *inflater) frame(rec *trace.WSFrame, f *wsframe.Frame) []*trace.WSFrame {
	if f.OpCode.IsControl() {
		return []*trace.WSFrame{rec}
	}
	if rec.Op != trace.OpContinuation {
		in.compressed = f.Rsv1()
		in.msg, in.tooBig = in.msg[:0], false
	}
	if !in.compressed {
		return []*trace.WSFrame{rec}
	}
	if f.Lost > 0 || f.Incomplete || f.Truncated() || len(in.msg)+len(f.Payload) > maxCompressed {
		in.lose()
	} else {
		in.msg = append(in.msg, f.Payload...)
	}
	rec.Payload, rec.Form = nil, trace.FormNone // compressed bytes say nothing
	in.held = append(in.held, rec)
	if !f.Fin {
		return nil
	}
	return in.finish()
}

func (in *inflater) finish() []*trace.WSFrame {
	held := in.held
	in.held = nil
	state := trace.DeflateOpaque
	var out []byte
	if !in.broken && !in.tooBig {
		var err error
		out, err = inflate(in.msg, in.dict)
		if err == nil {
			state = trace.DeflateInflated
			if in.takeover {
				in.dict = append(in.dict, out...)
				in.dict = in.dict[max(0, len(in.dict)-windowSize):]
			}
		} else if in.takeover {
			in.broken = true
		}
	}
	for _, r := range held {
		r.Deflate = state
	}
	if state == trace.DeflateInflated && len(held) > 0 {
		last := held[len(held)-1]
		last.Inflated = int64(len(out))
		if len(out) > 0 {
			last.Payload, last.Form = out, trace.FormRaw
		}
	}
	in.msg = in.msg[:0]
	if cap(in.msg) > 64<<10 {
		in.msg = nil // one big message must not pin its buffer for the connection's life
	}
	return held
}

// flush returns the frames of a message that will never end.
func (in *inflater) flush() []*trace.WSFrame {
	held := in.held
	in.held = nil
	for _, r := range held {
		r.Deflate = trace.DeflateOpaque
	}
	return held
}

func inflate(msg, dict []byte) ([]byte, error) {
	src := io.MultiReader(bytes.NewReader(msg), bytes.NewReader(deflateTail))
	r := flate.NewReaderDict(src, dict)
	defer r.Close()
	var out bytes.Buffer
	if _, err := io.Copy(&out, io.LimitReader(r, maxDecompressd+1)); err != nil {
		return nil, err
	}
	if out.Len() > maxDecompressd {
		return nil, io.ErrShortBuffer
	}
	return out.Bytes(), nil
}
