package capture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/gzip"
)

// Source is where packets come from: a capture file or a live interface.
type Source interface {
	// ReadPacket returns the next packet and its link type. Data is valid
	// until the next call. io.EOF ends a file.
	ReadPacket() (data []byte, ci gopacket.CaptureInfo, link layers.LinkType, err error)
	// Name describes the source for the trace header ("pcap:peak.pcap").
	Name() string
	// Drops returns packets dropped so far for want of room: in the
	// kernel's ring or the queue behind it (0 for files).
	Drops() uint64
	Close() error
}

// File magic numbers.
var (
	pcapMagics = [][]byte{
		{0xd4, 0xc3, 0xb2, 0xa1}, {0xa1, 0xb2, 0xc3, 0xd4}, // microseconds, both byte orders
		{0x4d, 0x3c, 0xb2, 0xa1}, {0xa1, 0xb2, 0x3c, 0x4d}, // nanoseconds
	}
	pcapngMagic = []byte{0x0a, 0x0d, 0x0d, 0x0a}
	gzipMagic   = []byte{0x1f, 0x8b}
)

// FileSource reads pcap or pcapng, plain or gzip'd, told apart by magic.
type FileSource struct {
	name  string
	f     io.Closer // nil for a reader the caller owns
	gz    *gzip.Reader
	pcap  *pcapgo.Reader
	ng    *pcapgo.NgReader
	count int64
}

// NotCaptureError says a file is not a packet capture.
type NotCaptureError struct {
	Path string
	Head []byte
}

func (e *NotCaptureError) Error() string {
	return fmt.Sprintf("%s is not a pcap or pcapng file (it starts with % x; write captures with tcpdump -w)", e.Path, e.Head)
}

// OpenFile opens a capture file.
func OpenFile(path string) (*FileSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open capture: %s is a directory, not a capture file (tcpdump -w FILE)", path)
	}
	s := &FileSource{name: path, f: f}
	if err := s.open(f); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// NewFileSource reads a capture from r; name is used in messages.
func NewFileSource(r io.Reader, name string) (*FileSource, error) {
	s := &FileSource{name: name}
	if err := s.open(r); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSource) open(src io.Reader) error {
	br := bufio.NewReaderSize(src, 1<<20)
	head, _ := br.Peek(4)
	var r io.Reader = br
	if bytes.HasPrefix(head, gzipMagic) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("open capture %s: gzip: %w", s.name, err)
		}
		s.gz = gz
		br = bufio.NewReaderSize(gz, 1<<20)
		r = br
		head, _ = br.Peek(4)
	}
	switch {
	case bytes.Equal(head, pcapngMagic):
		ng, err := pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{})
		if err != nil {
			return fmt.Errorf("open capture %s: pcapng: %w", s.name, err)
		}
		s.ng = ng
	case containsMagic(head):
		pr, err := pcapgo.NewReader(r)
		if err != nil {
			return fmt.Errorf("open capture %s: pcap: %w", s.name, err)
		}
		s.pcap = pr
	default:
		return &NotCaptureError{Path: s.name, Head: append([]byte(nil), head...)}
	}
	return nil
}

func containsMagic(head []byte) bool {
	for _, m := range pcapMagics {
		if bytes.Equal(head, m) {
			return true
		}
	}
	return false
}

// Name is "pcap:" and the file's base name: a full path may name the
// operator's home directory, and the trace may travel.
func (s *FileSource) Name() string  { return "pcap:" + filepath.Base(s.name) }
func (s *FileSource) Drops() uint64 { return 0 }

// ReadPacket returns the next packet. A file that ends inside a packet
// gives an error naming the packet; everything before it was returned.
func (s *FileSource) ReadPacket() ([]byte, gopacket.CaptureInfo, layers.LinkType, error) {
	var (
		data []byte
		ci   gopacket.CaptureInfo
		err  error
		link layers.LinkType
	)
	if s.ng != nil {
		data, ci, err = s.ng.ZeroCopyReadPacketData()
		link = s.ng.LinkType()
		if err == nil && s.ng.NInterfaces() > 1 {
			if intf, ierr := s.ng.Interface(ci.InterfaceIndex); ierr == nil {
				link = intf.LinkType
			}
		}
	} else {
		data, ci, err = s.pcap.ZeroCopyReadPacketData()
		link = s.pcap.LinkType()
	}
	switch {
	case err == nil:
		s.count++
		return data, ci, link, nil
	case errors.Is(err, io.EOF):
		return nil, ci, link, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, ci, link, fmt.Errorf("capture %s is truncated inside packet %d (was tcpdump killed?); the %d packets before it were read", s.name, s.count+1, s.count)
	}
	return nil, ci, link, fmt.Errorf("capture %s: packet %d: %w", s.name, s.count+1, err)
}

func (s *FileSource) Close() error {
	if s.gz != nil {
		s.gz.Close()
	}
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}
