package capture

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubreplay/hubreplay/trace"
)

// sink anonymizes and writes records behind the capture, in stages of
// their own joined by bounded queues of record batches: parsing kernel
// messages (what anonymizing them needs and no anonymizer state: the most
// of its work), anonymizing, writing (the trace's JSON and zstd). Together
// they took over half of an offline capture's processor time; as stages
// they share the cores with reassembly and parsing. Records wait in
// memory, as they waited in the trace writer's buffer before: nothing
// reaches disk unanonymized, order is kept, and a flush hands on what is
// held.
type sink struct {
	scrub    Scrubber
	w        RecordWriter
	batch    *batch
	since    time.Time   // when the batch's first record came
	queue    chan *batch // to the preparer
	prepared chan *batch // to the anonymizer
	scrubbed chan *batch // to the writer
	done     chan struct{}
	closed   bool
	written  atomic.Uint64

	mu  sync.Mutex
	err error
}

// batch is records handed on together, with what was done ahead for
// each (preparer).
type batch struct {
	recs []trace.Record
	prep []any
}

// preparer is a Scrubber that can do part of its work ahead, on another
// goroutine, without its state (anonymize.Anonymizer: parsing kernel
// messages); RecordPrepared then does what Record does.
type preparer interface {
	Prepare(r trace.Record) any
	RecordPrepared(r trace.Record, prepared any)
}

const (
	sinkBatch = 256 // records handed on at once
	// sinkLinger is how long a record waits for its batch to fill: then
	// it goes on anyway, so that a live capture's records reach the trace
	// writer (and, within its flush interval, the disk) as soon as they
	// did before the stages, and a kill loses no more.
	sinkLinger = 50 * time.Millisecond
	sinkQueue  = 4 // batches waiting at each stage at most: capture slows to the slowest stage's pace beyond
)

func newSink(scrub Scrubber) *sink {
	return &sink{scrub: scrub, queue: make(chan *batch, sinkQueue), prepared: make(chan *batch, sinkQueue),
		scrubbed: make(chan *batch, sinkQueue), done: make(chan struct{}), batch: newBatch()}
}

func newBatch() *batch { return &batch{recs: make([]trace.Record, 0, sinkBatch)} }

// start begins writing to w; records added before are held until then.
func (s *sink) start(w RecordWriter) {
	s.w = w
	go s.prepare()
	go s.anonymize()
	go s.write()
}

// add queues a record; once the writer has failed, records are dropped
// (the capture stops on the error, which Run returns).
func (s *sink) add(r trace.Record) {
	if len(s.batch.recs) == 0 {
		s.since = time.Now()
	}
	s.batch.recs = append(s.batch.recs, r)
	if len(s.batch.recs) >= sinkBatch {
		s.flush()
	}
}

// tick hands on a batch that has waited sinkLinger.
func (s *sink) tick() {
	if len(s.batch.recs) > 0 && time.Since(s.since) >= sinkLinger {
		s.flush()
	}
}

// flush hands on the records held (before start, they stay held).
func (s *sink) flush() {
	if len(s.batch.recs) == 0 || s.w == nil {
		return
	}
	s.queue <- s.batch
	s.batch = newBatch()
}

func (s *sink) prepare() {
	defer close(s.prepared)
	p, ok := s.scrub.(preparer)
	for b := range s.queue {
		if ok && s.failed() == nil {
			// Preparing needs no state: half of each batch beside the
			// other, on whatever core is free.
			b.prep = make([]any, len(b.recs))
			prep := func(from, to int) {
				for i := from; i < to; i++ {
					b.prep[i] = p.Prepare(b.recs[i])
				}
			}
			half := len(b.recs) / 2
			var wg sync.WaitGroup
			wg.Go(func() { prep(half, len(b.recs)) })
			prep(0, half)
			wg.Wait()
		}
		s.prepared <- b
	}
}

func (s *sink) anonymize() {
	defer close(s.scrubbed)
	p, _ := s.scrub.(preparer)
	for b := range s.prepared {
		switch {
		case s.scrub == nil || s.failed() != nil:
		case b.prep != nil:
			for i, r := range b.recs {
				p.RecordPrepared(r, b.prep[i])
			}
		default:
			for _, r := range b.recs {
				s.scrub.Record(r)
			}
		}
		s.scrubbed <- b
	}
}

func (s *sink) write() {
	defer close(s.done)
	for b := range s.scrubbed {
		for _, r := range b.recs {
			if s.failed() != nil {
				break
			}
			if err := s.w.Write(r); err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				break
			}
			s.written.Add(1)
		}
	}
}

// failed is the writer's first error, if any.
func (s *sink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// close writes what is held and waits for it; it returns the writer's
// first error.
func (s *sink) close() error {
	if s.w == nil || s.closed {
		return s.failed()
	}
	s.closed = true
	s.flush()
	close(s.queue)
	<-s.done
	return s.failed()
}
