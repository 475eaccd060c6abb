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
	// Workers reassemble and parse the connections, each a share of them
	// by TCP 4-tuple (default: one per processor, GOMAXPROCS).
	Workers int
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

// capturer is one flow worker's state (flows.go): the connections whose
// 4-tuples hash to it, reassembled and parsed on one goroutine.
type capturer struct {
	o        Options
	start    time.Time // the first packet's time, the trace's 0
	lastTS   time.Duration
	ending   bool
	nextID   trace.ConnID // the worker's own numbers; the merger renumbers
	counters tally
	out      []tagged // records made in this round
	key      uint64   // where in the packet stream they are made

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

// emit hands a record on to the merger, to be anonymized and written.
func (c *capturer) emit(r trace.Record) {
	c.out = append(c.out, tagged{c.key, r})
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
	r := &reader{o: o, sink: newSink(o.Scrub), drops: map[string]uint64{}}
	defer r.sink.close() // on every return: the writer goroutine ends
	dec := newDecoder()

	var (
		lastFlush, lastStats time.Duration
		lastProgress         = time.Now()
		srcErr               error
	)
	report := func() {
		r.drops["kernel"] = src.Drops()
		if o.Progress != nil {
			o.Progress(r.snapshot())
		}
	}
	for r.sink.failed() == nil {
		if err := ctx.Err(); err != nil {
			break
		}
		data, ci, link, err := src.ReadPacket()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			if errors.Is(err, errTimeout) {
				if r.flows != nil {
					r.flows.end(r.packets, control{}, roundEnd{quiet: true})
				}
				if time.Since(lastProgress) >= time.Second {
					report()
					lastProgress = time.Now()
				}
				continue
			}
			srcErr = err
			break
		}
		if r.flows == nil {
			start := ci.Timestamp
			if start.IsZero() {
				start = time.Now()
			}
			if err := r.begin(start, create); err != nil {
				return r.snapshot(), err
			}
		}
		r.packets++
		r.bytes += uint64(ci.Length)
		now := r.ts(ci.Timestamp)
		r.lastTS = max(r.lastTS, now)
		if o.MaxDuration > 0 && now > o.MaxDuration {
			break
		}
		flow, tcp, err := dec.decode(link, data)
		switch {
		case errors.Is(err, errNotTCP):
			r.drops["not_tcp"]++
		case errors.Is(err, errFragment):
			r.drops["ip_fragment"]++
		case err != nil:
			srcErr = fmt.Errorf("%s: %w", src.Name(), err)
		case !r.ours(tcp):
			r.drops["other_port"]++
		default:
			if ci.CaptureLength < ci.Length {
				r.drops["snaplen"]++
			}
			r.flows.add(r.packets, flow, tcp, ci)
		}
		if srcErr != nil {
			break
		}
		var ctl control
		if now-lastFlush >= min(time.Second, o.FlushAfter) {
			lastFlush = now
			ctl = control{flush: true, t: r.start.Add(now - o.FlushAfter), tc: r.start.Add(now - o.IdleTimeout)}
		}
		var e roundEnd
		if now-lastStats >= o.StatsEvery {
			lastStats = now
			e.stats = r.stats(now, src)
		}
		switch {
		case ctl.flush || e.stats != nil || r.flows.held >= roundPackets*len(r.flows.shares):
			r.flows.end(r.packets, ctl, e)
		case r.packets%16 == 0 && r.flows.held > 0 && time.Since(r.flows.since) >= sinkLinger:
			// A clock read on every packet costs; a quiet live source
			// ends its round on its poll timeout.
			r.flows.end(r.packets, ctl, e)
		}
		if r.packets%1024 == 0 && time.Since(lastProgress) >= time.Second {
			report()
			lastProgress = time.Now()
		}
	}
	if r.flows == nil {
		if err := r.begin(time.Now(), create); err != nil {
			return r.snapshot(), err
		}
	}
	r.flows.end(r.packets, control{end: true, lastTS: r.lastTS}, roundEnd{stats: r.stats(r.lastTS, src)})
	r.flows.close()
	werr := r.sink.close() // every record written before the last report
	report()
	if werr != nil {
		return r.snapshot(), fmt.Errorf("write trace: %w", werr)
	}
	return r.snapshot(), srcErr
}

// reader is Run's state: what it counts itself, and the flow workers
// behind it (nil until the output is open).
type reader struct {
	o              Options
	sink           *sink
	flows          *flows
	start          time.Time
	lastTS         time.Duration
	packets, bytes uint64
	drops          map[string]uint64
}

func (r *reader) ts(t time.Time) time.Duration {
	return max(t.Sub(r.start), 0)
}

// begin opens the output and starts the sink and the flow workers.
func (r *reader) begin(start time.Time, create func(time.Time) (RecordWriter, error)) error {
	r.start = start
	w, err := create(start.UTC())
	if err != nil {
		return err
	}
	r.sink.start(w)
	r.flows = startFlows(r.o, start, r.sink)
	return nil
}

func (r *reader) ours(tcp *layers.TCP) bool {
	for _, p := range [2]uint16{uint16(tcp.SrcPort), uint16(tcp.DstPort)} {
		if slices.Contains(r.o.Ports, p) || slices.Contains(r.o.APIPorts, p) {
			return true
		}
	}
	return false
}

// stats is the reader's part of a stats record; the merger adds the
// workers' drops.
func (r *reader) stats(now time.Duration, src Source) *trace.Stats {
	r.drops["kernel"] = src.Drops()
	drops := map[string]uint64{}
	for k, v := range r.drops {
		if v > 0 || k == "kernel" {
			drops[k] = v
		}
	}
	return &trace.Stats{TS: now, Packets: r.packets, Bytes: r.bytes, Drops: drops}
}

func (r *reader) snapshot() Counters {
	var t tally
	if r.flows != nil {
		t = r.flows.tally()
	}
	s := Counters{Packets: r.packets, Bytes: r.bytes, Drops: make(map[string]uint64, len(r.drops)+1),
		Streams: t.Streams, Open: t.Open, Gaps: t.Gaps, GapBytes: t.GapBytes, Exchanges: t.Exchanges, Frames: t.Frames,
		Routes: t.Routes, ParseErrors: t.ParseErrors, Orphans: t.Orphans, Duration: r.lastTS, Records: r.sink.written.Load()}
	for k, v := range r.drops {
		s.Drops[k] = v
	}
	if t.UpgradePending > 0 {
		s.Drops["upgrade_pending"] = t.UpgradePending
	}
	return s
}

// errTimeout is what a live source returns when no packet came in time;
// Run uses the pause to report progress and check ctx.
var errTimeout = os.ErrDeadlineExceeded
