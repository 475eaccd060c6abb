package capture

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/gzip"
)

// pcapBytes writes packets as a pcap (or pcapng) file in memory.
func pcapBytes(t testing.TB, pkts []pkt, ng bool) []byte {
	t.Helper()
	var b bytes.Buffer
	if ng {
		w, err := pcapgo.NewNgWriter(&b, layers.LinkTypeEthernet)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			if err := w.WritePacket(p.ci, p.data); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(p.ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func gzipped(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return out.Bytes()
}

// FuzzPcap feeds arbitrary files through the whole capture: file format,
// link layers, reassembly, HTTP and WebSocket parsing. It must never
// panic, and a bad file gets a one-line error.
func FuzzPcap(f *testing.F) {
	now := epoch
	_, pipe := pipelined(f, &now)
	k := newTCPConn(f, &now, 11, 40005)
	wsConn := cat(k.handshake(), k.send(true, upgradeReq+"\x81\x83abcd\x10\x11\x12", 1448),
		k.send(false, deflate101+"\xc1\x03abc\x81\x02hi\x88\x02\x03\xe8", 1448), []pkt{k.rst(true)})
	api := newTCPConn(f, &now, 20, 40010)
	api.sport = 8001
	apiConn := cat(api.handshake(), api.send(true, "POST /api/routes/user/a HTTP/1.1\r\nContent-Length: 15\r\n\r\n{\"target\":\"x\"}", 1448),
		api.send(false, "HTTP/1.1 201 Created\r\n\r\n", 1448))
	for _, pkts := range [][]pkt{pipe, wsConn, apiConn} {
		f.Add(pcapBytes(f, pkts, false))
		f.Add(pcapBytes(f, pkts[:len(pkts)/2], true))
	}
	f.Add(gzipped(pcapBytes(f, wsConn, false)))
	f.Add([]byte("\xd4\xc3\xb2\xa1\x02\x00\x04\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := NewFileSource(bytes.NewReader(data), "fuzz.pcap")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		w := &memWriter{}
		_, err = Run(context.Background(), src, func(time.Time) (RecordWriter, error) { return w, nil },
			Options{Raw: true, APIPorts: []uint16{8001}, MaxPagesPerConn: 16, MaxPagesTotal: 64})
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error: %q", err)
		}
		assertOrderRule(t, w.recs)
	})
}
