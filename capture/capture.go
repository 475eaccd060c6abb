// Package capture turns a JupyterHub proxy's packets into an anonymized
// trace: packets from a capture file or a live interface are reassembled
// into TCP streams (gopacket's reassembly), parsed as HTTP/1.1 and
// WebSocket, turned into trace records, anonymized, and written. Calls to
// the proxy's REST API become route events; its token is never kept.
package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"

	"github.com/hubreplay/hubreplay/trace"
)

// Scrubber anonymizes a record in place before it is written.
type Scrubber interface {
	Record(trace.Record)
}

// RecordWriter is where records go (a trace.Writer).
type RecordWriter interface {
	Write(trace.Record) error
}

// Options configure a capture. Zero values take the defaults below.
type Options struct {
	// Ports are the proxy's public ports (default 8000); APIPorts its
	// REST API ports, whose route changes become route events.
	Ports    []uint16
	APIPorts []uint16
	// Scrub anonymizes every record before it is written. It may be nil
	// only with Raw, the operator's explicit choice to keep secrets.
	Scrub Scrubber
	Raw   bool

	MaxBody    int // body bytes kept per message for the anonymizer (default 64 KiB)
	MaxPayload int // WebSocket payload bytes kept per frame (default 1 MiB)
	// FlushAfter gives up waiting for missing segments after this much
	// packet time; what they held becomes a gap (default 3 s).
	FlushAfter time.Duration
	// IdleTimeout closes connections silent this long (default 15 min;
	// kernel WebSockets can be quiet for minutes).
	IdleTimeout time.Duration
	// Reassembly memory: out-of-order pages (~1.9 KB) buffered per
	// connection and in all (defaults 1024 and 131072, ~250 MB at most).
	MaxPagesPerConn, MaxPagesTotal int
	// StatsEvery writes a stats record this often in packet time (10 s).
	StatsEvery time.Duration
	// MaxDuration stops after this much packet time (0: no limit).
	MaxDuration time.Duration
	// Progress is called about once a second (wall clock) and at the end.
	Progress func(Counters)
	Log      *slog.Logger
}

func (o Options) withDefaults() Options {
	if len(o.Ports) == 0 {
		o.Ports = []uint16{8000}
	}
	if o.MaxBody == 0 {
		o.MaxBody = 64 << 10
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = 1 << 20
	}
	if o.FlushAfter == 0 {
		o.FlushAfter = 3 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 15 * time.Minute
	}
	if o.MaxPagesPerConn == 0 {
		o.MaxPagesPerConn = 1024
	}
	if o.MaxPagesTotal == 0 {
		o.MaxPagesTotal = 128 << 10
	}
	if o.StatsEvery == 0 {
		o.StatsEvery = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Counters describe a capture so far.
type Counters struct {
	Packets, Bytes uint64
	// Drops counts packets or bytes not turned into records, by cause:
	// "kernel" (a live capture's ring, or the queue behind it, was full), "snaplen" (packets
	// cut short by the capture length), "not_tcp", "other_port",
	// "ip_fragment", "upgrade_pending".
	Drops                     map[string]uint64
	Streams                   uint64 // connections seen (API ones included)
	Open                      int64  // connections open now
	Gaps                      uint64
	GapBytes                  int64
	Exchanges, Frames, Routes uint64
	ParseErrors, Orphans      uint64
	Records                   uint64
	Duration                  time.Duration // packet time covered
}

// ErrRawNeedsScrubber guards against writing secrets by accident.
var ErrRawNeedsScrubber = errors.New("capture without an anonymizer needs Raw set: secrets would reach the trace")

// capturer is one capture's state; one goroutine runs it.
type capturer struct {
	o        Options
	w        RecordWriter
	sink     *sink
	start    time.Time
	lastTS   time.Duration
	ending   bool
	nextID   trace.ConnID
	counters Counters

	// Port reuse (reuse.go): the connection each 4-tuple has now, the
	// generation of tuples that were reused, and the packet's own flow
	// while the assembler calls New with a generation's stand-in.
	live     map[tuple]*conn
	gens     map[tuple]uint32
	realFlow gopacket.Flow
}

func (c *capturer) ts(t time.Time) time.Duration {
	return max(t.Sub(c.start), 0)
}

// emit hands a record on to be anonymized and written (sink); the first
// write error stops the capture (Run returns it).
func (c *capturer) emit(r trace.Record) {
	c.sink.add(r)
}

// New implements reassembly.StreamFactory.
func (c *capturer) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	if !tcp.SYN && len(tcp.Payload) == 0 {
		// An ACK, FIN or RST of a connection we do not follow (one that
		// just ended, or began before the capture): nothing to open. Left
		// as a stream, it would swallow the SYN of the next connection on
		// the same ports.
		return nil
	}
	netFlow = c.realFlow
	src, dst := uint16(tcp.SrcPort), uint16(tcp.DstPort)
	api := slices.Contains(c.o.APIPorts, dst) || slices.Contains(c.o.APIPorts, src)
	server := c.o.Ports
	if api {
		server = c.o.APIPorts
	}
	// The side on a proxy port is the server; a SYN alone settles a tie.
	firstIsClient := slices.Contains(server, dst)
	if slices.Contains(server, src) && slices.Contains(server, dst) {
		firstIsClient = !(tcp.SYN && tcp.ACK)
	}
	k := newConn(c, api, firstIsClient, !tcp.SYN)
	k.client, k.server = netFlow.Src().String()+":"+tcpFlow.Src().String(), netFlow.Dst().String()+":"+tcpFlow.Dst().String()
	k.key = tuple{netFlow, tcpFlow}
	if !firstIsClient {
		k.client, k.server = k.server, k.client
		k.key = tuple{netFlow.Reverse(), tcpFlow.Reverse()}
	}
	if tcp.SYN && !tcp.ACK {
		k.isn, k.sawSYN = tcp.Seq, true
	}
	k.gen = c.gens[k.key]
	c.live[k.key] = k
	if tcp.SYN {
		k.open(c.ts(ac.GetCaptureInfo().Timestamp))
	}
	return k
}

type assemblerContext gopacket.CaptureInfo

func (a *assemblerContext) GetCaptureInfo() gopacket.CaptureInfo { return gopacket.CaptureInfo(*a) }

// Run captures from src until it ends, ctx is done, or MaxDuration of
// packet time has passed. create is called with the first packet's time
// (or now, if there are none) to open the output. Whatever happens, every
// connection is closed out and a final stats record written before Run
// returns, so a failing source loses nothing already read; the caller
// closes the writer.
func Run(ctx context.Context, src Source, create func(start time.Time) (RecordWriter, error), o Options) (Counters, error) {
	o = o.withDefaults()
	if o.Scrub == nil && !o.Raw {
		return Counters{}, ErrRawNeedsScrubber
	}
	c := &capturer{o: o, live: map[tuple]*conn{}, gens: map[tuple]uint32{}, sink: newSink(o.Scrub)}
	defer c.sink.close() // on every return: the writer goroutine ends
	c.counters.Drops = map[string]uint64{}
	pool := reassembly.NewStreamPool(c)
	asm := reassembly.NewAssembler(pool)
	asm.MaxBufferedPagesPerConnection = o.MaxPagesPerConn
	asm.MaxBufferedPagesTotal = o.MaxPagesTotal
	dec := newDecoder()

	var (
		lastFlush, lastStats time.Duration
		lastProgress         = time.Now()
		srcErr               error
	)
	report := func() {
		c.counters.Drops["kernel"] = src.Drops()
		if o.Progress != nil {
			o.Progress(c.snapshot())
		}
	}
	for c.sink.failed() == nil {
		if err := ctx.Err(); err != nil {
			break
		}
		data, ci, link, err := src.ReadPacket()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			if errors.Is(err, errTimeout) {
				c.sink.flush()
				if time.Since(lastProgress) >= time.Second {
					report()
					lastProgress = time.Now()
				}
				continue
			}
			srcErr = err
			break
		}
		if c.w == nil {
			if c.start = ci.Timestamp; c.start.IsZero() {
				c.start = time.Now()
			}
			if c.w, err = create(c.start.UTC()); err != nil {
				return c.snapshot(), err
			}
			c.sink.start(c.w)
		}
		c.counters.Packets++
		c.counters.Bytes += uint64(ci.Length)
		now := c.ts(ci.Timestamp)
		c.lastTS = max(c.lastTS, now)
		if o.MaxDuration > 0 && now > o.MaxDuration {
			break
		}
		flow, tcp, err := dec.decode(link, data)
		switch {
		case errors.Is(err, errNotTCP):
			c.counters.Drops["not_tcp"]++
		case errors.Is(err, errFragment):
			c.counters.Drops["ip_fragment"]++
		case err != nil:
			srcErr = fmt.Errorf("%s: %w", src.Name(), err)
		case !c.ours(tcp):
			c.counters.Drops["other_port"]++
		default:
			if ci.CaptureLength < ci.Length {
				c.counters.Drops["snaplen"]++
			}
			actx := assemblerContext(ci)
			asm.AssembleWithContext(c.reuse(flow, tcp, now), tcp, &actx)
		}
		if srcErr != nil {
			break
		}
		if now-lastFlush >= min(time.Second, o.FlushAfter) {
			lastFlush = now
			asm.FlushWithOptions(reassembly.FlushOptions{
				T:  c.start.Add(now - o.FlushAfter),
				TC: c.start.Add(now - o.IdleTimeout),
			})
		}
		if now-lastStats >= o.StatsEvery {
			lastStats = now
			c.stats(now, src)
		}
		if c.counters.Packets%16 == 0 { // a clock read on every packet costs; a quiet live source flushes on its poll timeout
			c.sink.tick()
		}
		if c.counters.Packets%1024 == 0 && time.Since(lastProgress) >= time.Second {
			report()
			lastProgress = time.Now()
		}
	}
	if c.w == nil {
		c.start = time.Now()
		var err error
		if c.w, err = create(c.start.UTC()); err != nil {
			return c.snapshot(), err
		}
		c.sink.start(c.w)
	}
	c.ending = true
	asm.FlushAll()
	c.stats(c.lastTS, src)
	werr := c.sink.close() // every record written before the last report
	report()
	if werr != nil {
		return c.snapshot(), fmt.Errorf("write trace: %w", werr)
	}
	return c.snapshot(), srcErr
}

func (c *capturer) ours(tcp *layers.TCP) bool {
	for _, p := range [2]uint16{uint16(tcp.SrcPort), uint16(tcp.DstPort)} {
		if slices.Contains(c.o.Ports, p) || slices.Contains(c.o.APIPorts, p) {
			return true
		}
	}
	return false
}

func (c *capturer) stats(now time.Duration, src Source) {
	c.counters.Drops["kernel"] = src.Drops()
	drops := map[string]uint64{}
	for k, v := range c.counters.Drops {
		if v > 0 || k == "kernel" {
			drops[k] = v
		}
	}
	c.emit(&trace.Stats{TS: now, Packets: c.counters.Packets, Bytes: c.counters.Bytes, Drops: drops})
}

func (c *capturer) snapshot() Counters {
	s := c.counters
	s.Drops = make(map[string]uint64, len(c.counters.Drops))
	for k, v := range c.counters.Drops {
		s.Drops[k] = v
	}
	s.Duration = c.lastTS
	s.Records = c.sink.written.Load()
	return s
}

// errTimeout is what a live source returns when no packet came in time;
// Run uses the pause to report progress and check ctx.
var errTimeout = os.ErrDeadlineExceeded
