package trace

import (
	"encoding/binary"
	"hash/crc32"
)

// On disk a trace is a sequence of zstd frames. Every data frame (whole
// JSON lines) is preceded by a small zstd *skippable* frame that indexes
// it, and a closed trace ends with a skippable end marker. `zstd -dc`
// ignores skippable frames, so the decompressed stream is plain JSON Lines;
// this reader uses them to find frame boundaries without trusting the
// compressed bytes, to report damage by byte offset, and to tell a trace
// that was closed from one whose writer died. See FORMAT.md.
const (
	// skippableMagic is one of the sixteen magics zstd reserves for
	// skippable frames (0x184D2A50..5F); hubreplay uses this one only.
	skippableMagic    uint32 = 0x184D2A5E
	skippableMagicLow uint32 = 0x184D2A50
	zstdMagic         uint32 = 0xFD2FB528

	skippableHeaderLen = 8 // magic + payload size, both little-endian u32

	indexTag        = "HRTF"
	indexPayloadLen = 36
	endTag          = "HRTE"
	endPayloadLen   = 24

	// MaxFrameBytes bounds a frame's compressed and decompressed size, so a
	// damaged index cannot make the reader allocate without limit. Writers
	// never come near it: they flush at FlushBytes (4 MiB by default).
	MaxFrameBytes = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameIndex describes the data frame that follows it.
type frameIndex struct {
	compressed   uint32
	decompressed uint32
	records      uint32
	minTS, maxTS int64
}

func (x frameIndex) appendTo(dst []byte) []byte {
	var p [skippableHeaderLen + indexPayloadLen]byte
	binary.LittleEndian.PutUint32(p[0:], skippableMagic)
	binary.LittleEndian.PutUint32(p[4:], indexPayloadLen)
	b := p[skippableHeaderLen:]
	copy(b, indexTag)
	binary.LittleEndian.PutUint32(b[4:], x.compressed)
	binary.LittleEndian.PutUint32(b[8:], x.decompressed)
	binary.LittleEndian.PutUint32(b[12:], x.records)
	binary.LittleEndian.PutUint64(b[16:], uint64(x.minTS))
	binary.LittleEndian.PutUint64(b[24:], uint64(x.maxTS))
	binary.LittleEndian.PutUint32(b[32:], crc32.Checksum(b[:32], castagnoli))
	return append(dst, p[:]...)
}

// parseIndex decodes an index payload; ok is false if its checksum fails.
func parseIndex(b []byte) (frameIndex, bool) {
	if len(b) != indexPayloadLen || string(b[:4]) != indexTag ||
		crc32.Checksum(b[:32], castagnoli) != binary.LittleEndian.Uint32(b[32:]) {
		return frameIndex{}, false
	}
	return frameIndex{
		compressed:   binary.LittleEndian.Uint32(b[4:]),
		decompressed: binary.LittleEndian.Uint32(b[8:]),
		records:      binary.LittleEndian.Uint32(b[12:]),
		minTS:        int64(binary.LittleEndian.Uint64(b[16:])),
		maxTS:        int64(binary.LittleEndian.Uint64(b[24:])),
	}, true
}

// endMarker closes a trace: how many records and data frames it holds.
type endMarker struct {
	records uint64 // including the header record
	frames  uint32
}

func (e endMarker) appendTo(dst []byte) []byte {
	var p [skippableHeaderLen + endPayloadLen]byte
	binary.LittleEndian.PutUint32(p[0:], skippableMagic)
	binary.LittleEndian.PutUint32(p[4:], endPayloadLen)
	b := p[skippableHeaderLen:]
	copy(b, endTag)
	binary.LittleEndian.PutUint64(b[4:], e.records)
	binary.LittleEndian.PutUint32(b[12:], e.frames)
	// b[16:20] reserved, zero
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
	return append(dst, p[:]...)
}

func parseEnd(b []byte) (endMarker, bool) {
	if len(b) != endPayloadLen || string(b[:4]) != endTag ||
		crc32.Checksum(b[:20], castagnoli) != binary.LittleEndian.Uint32(b[20:]) {
		return endMarker{}, false
	}
	return endMarker{
		records: binary.LittleEndian.Uint64(b[4:]),
		frames:  binary.LittleEndian.Uint32(b[12:]),
	}, true
}

func isSkippable(magic uint32) bool { return magic&0xFFFFFFF0 == skippableMagicLow }
