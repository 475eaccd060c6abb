package capture

import (
	"runtime"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"

	"github.com/hubreplay/hubreplay/trace"
)

// The work spread by flow. The reader (Run's goroutine) decodes each
// packet far enough to know its TCP 4-tuple and hands a copy to the
// worker that owns the tuple (a hash of both directions' endpoints): one
// connection is reassembled and parsed on one worker, without locks, each
// worker a capturer with its own assembler, connections and port-reuse
// state. Packets go out in rounds: each worker gets its share of a round
// (perhaps none) and the round's control (flush, the end), and answers
// with the records the round made, each tagged with the number of the
// packet whose processing made it. The merger takes the rounds back in
// order and merges each round's records by those numbers: the trace is
// in the order one worker writes it (what one flush closes out aside,
// whose order gopacket leaves to a map's), and the connections are
// numbered in the order they opened.

// roundPackets, times the workers, ends a round: enough packets that a
// round's channel sends cost little next to its work, few enough that the
// workers' rounds stay small in memory (the sink's queues bound the rest).
const roundPackets = 256

// roundsAhead is how many rounds a worker may have waiting, or done and
// not yet merged: the reader and the workers slow to the merger's pace
// beyond.
const roundsAhead = 2

// tally is what a worker counts; Counters adds the reader's counts.
type tally struct {
	Streams                                         uint64
	Open                                            int64
	Gaps                                            uint64
	GapBytes                                        int64
	Exchanges, Frames, Routes, ParseErrors, Orphans uint64
	UpgradePending                                  uint64
}

func (t *tally) add(o tally) {
	t.Streams += o.Streams
	t.Open += o.Open
	t.Gaps += o.Gaps
	t.GapBytes += o.GapBytes
	t.Exchanges += o.Exchanges
	t.Frames += o.Frames
	t.Routes += o.Routes
	t.ParseErrors += o.ParseErrors
	t.Orphans += o.Orphans
	t.UpgradePending += o.UpgradePending
}

// packet is a packet handed to a worker as the reader decoded it: its
// network flow, and its TCP segment (header and payload) copied out of the
// source's buffer into its share's arena, for the worker to decode the
// TCP header alone again.
type packet struct {
	seq  uint64
	flow gopacket.Flow
	seg  []byte
	ci   gopacket.CaptureInfo
}

// control is what every worker does after a round's packets.
type control struct {
	flush  bool
	t, tc  time.Time // reassembly.FlushOptions
	end    bool
	lastTS time.Duration // with end: the capture's last packet time
}

// share is one worker's part of a round.
type share struct {
	pkts  []packet
	arena []byte
	ctl   control
	last  uint64 // the round's last packet: a control's records sort after it
}

// arenaBytes is the size of the pieces a share's packets are copied
// into: about a round's share of full-sized packets. A full piece is left
// to the packets in it and a new one begun, so nothing is copied twice.
const arenaBytes = 256 << 10

// copyIn copies head and then body into the arena, one after the other.
func (s *share) copyIn(head, body []byte) []byte {
	n := len(head) + len(body)
	if cap(s.arena)-len(s.arena) < n {
		s.arena = make([]byte, 0, max(arenaBytes, n))
	}
	off := len(s.arena)
	s.arena = append(append(s.arena, head...), body...)
	return s.arena[off:len(s.arena):len(s.arena)]
}

// made is what a worker made of its share: the records in the order it
// made them, and its counts after the round.
type made struct {
	recs   []tagged
	counts tally
}

// tagged is a record and where in the packet stream it was made: twice
// the packet's number, or one more than twice the round's last packet for
// a control's records.
type tagged struct {
	key uint64
	rec trace.Record
}

// roundEnd goes from the reader to the merger, one for each round.
type roundEnd struct {
	stats *trace.Stats // the reader's part of a stats record, written after the round's records
	quiet bool         // a live source had nothing to read: hand on what is held
}

// flows is the reader's side of the workers and the merger.
type flows struct {
	ins    []chan *share
	outs   []chan made
	ends   chan roundEnd
	shares []*share
	free   chan *share // shares the workers are done with, to use again
	held   int         // packets in the round so far
	since  time.Time   // when the round's first packet came
	done   chan struct{}

	mu     sync.Mutex
	counts []tally // each worker's, after the last round merged
}

// workers is how many flow workers a capture uses.
func (o Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// startFlows starts the workers and the merger, which writes to s (started).
func startFlows(o Options, start time.Time, s *sink) *flows {
	n := o.workers()
	f := &flows{ins: make([]chan *share, n), outs: make([]chan made, n), ends: make(chan roundEnd, 2*roundsAhead),
		shares: make([]*share, n), done: make(chan struct{}), counts: make([]tally, n),
		free: make(chan *share, (2*roundsAhead+2)*n)}
	for i := range n {
		f.ins[i], f.outs[i] = make(chan *share, roundsAhead), make(chan made, roundsAhead)
		f.shares[i] = f.share()
		w := &capturer{o: o, start: start, live: map[tuple]*conn{}, gens: map[tuple]uint32{}}
		go w.run(f.ins[i], f.outs[i], f.free, max(o.MaxPagesTotal/n, 1))
	}
	go f.merge(s)
	return f
}

// add hands a packet to the worker that owns its flow.
func (f *flows) add(seq uint64, flow gopacket.Flow, tcp *layers.TCP, ci gopacket.CaptureInfo) {
	// FastHash is the same both ways, so both directions go to one worker.
	h := flow.FastHash()*0x9e3779b97f4a7c15 ^ tcp.TransportFlow().FastHash()
	s := f.shares[h%uint64(len(f.shares))]
	s.pkts = append(s.pkts, packet{seq: seq, flow: flow, seg: s.copyIn(tcp.Contents, tcp.Payload), ci: ci})
	if f.held == 0 {
		f.since = time.Now()
	}
	f.held++
}

// end ends the round after packet last, with ctl for every worker.
func (f *flows) end(last uint64, ctl control, e roundEnd) {
	for i, s := range f.shares {
		s.ctl, s.last = ctl, last
		f.ins[i] <- s
		f.shares[i] = f.share()
	}
	f.ends <- e
	f.held = 0
}

// share is an empty share, one used before if there is one.
func (f *flows) share() *share {
	select {
	case s := <-f.free:
		return s
	default:
		return &share{}
	}
}

// close waits for every round to be merged; the workers end.
func (f *flows) close() {
	for _, in := range f.ins {
		close(in)
	}
	close(f.ends)
	<-f.done
}

// tally is the workers' counts as of the last round merged.
func (f *flows) tally() tally {
	f.mu.Lock()
	defer f.mu.Unlock()
	var t tally
	for _, c := range f.counts {
		t.add(c)
	}
	return t
}

// run is a worker: it reassembles and parses its shares' packets, and
// does each round's control.
func (c *capturer) run(in <-chan *share, out chan<- made, free chan<- *share, pages int) {
	defer close(out)
	asm := reassembly.NewAssembler(reassembly.NewStreamPool(c))
	asm.MaxBufferedPagesPerConnection = c.o.MaxPagesPerConn
	asm.MaxBufferedPagesTotal = pages
	var tcp layers.TCP
	for s := range in {
		for _, p := range s.pkts {
			c.key = 2 * p.seq
			if err := tcp.DecodeFromBytes(p.seg, gopacket.NilDecodeFeedback); err != nil {
				continue // the reader decoded these bytes before: cannot happen
			}
			actx := assemblerContext(p.ci)
			asm.AssembleWithContext(c.reuse(p.flow, &tcp, c.ts(p.ci.Timestamp)), &tcp, &actx)
		}
		c.key = 2*s.last + 1
		if s.ctl.flush {
			asm.FlushWithOptions(reassembly.FlushOptions{T: s.ctl.t, TC: s.ctl.tc})
		}
		if s.ctl.end {
			c.ending, c.lastTS = true, s.ctl.lastTS
			asm.FlushAll()
		}
		out <- made{recs: c.out, counts: c.counters}
		c.out = make([]tagged, 0, min(cap(c.out), 4*roundPackets)) // a flush that closed out many does not size every round after it
		s.pkts, s.arena, s.ctl = s.pkts[:0], s.arena[:0], control{}
		select {
		case free <- s:
		default:
		}
	}
}

// merge takes the rounds back in order, merges each round's records by
// their place in the packet stream, numbers the connections in the order
// they opened, and hands the records to s.
func (f *flows) merge(s *sink) {
	defer close(f.done)
	n := len(f.outs)
	round := make([]made, n)
	next := make([]int, n)
	ids := make([]map[trace.ConnID]trace.ConnID, n) // each worker's own numbers to the trace's
	for i := range ids {
		ids[i] = map[trace.ConnID]trace.ConnID{}
	}
	var last trace.ConnID
	for e := range f.ends {
		for i, out := range f.outs {
			round[i], next[i] = <-out, 0
		}
		for {
			w := -1
			for i := range round {
				if next[i] < len(round[i].recs) && (w < 0 || round[i].recs[next[i]].key < round[w].recs[next[w]].key) {
					w = i
				}
			}
			if w < 0 {
				break
			}
			r := round[w].recs[next[w]].rec
			next[w]++
			if own, ok := trace.Conn(r); ok {
				id, known := ids[w][own]
				if !known {
					last++
					id = last
					ids[w][own] = id
				}
				trace.SetConn(r, id)
				if _, closed := r.(*trace.ConnClose); closed {
					delete(ids[w], own)
				}
			}
			s.add(r)
		}
		f.mu.Lock()
		var t tally
		for i := range round {
			f.counts[i] = round[i].counts
			t.add(round[i].counts)
		}
		f.mu.Unlock()
		if e.stats != nil {
			if t.UpgradePending > 0 {
				e.stats.Drops["upgrade_pending"] = t.UpgradePending
			}
			s.add(e.stats)
		}
		if e.quiet {
			s.flush()
		} else {
			s.tick()
		}
	}
}
