package capture

import (
	"sync"
	"sync/atomic"

	"github.com/hubreplay/hubreplay/trace"
)

// sink anonymizes and writes records, each on a goroutine of its own.
// Those two (the anonymizer's JSON; the trace's JSON and zstd) took over
// half of an offline capture's processor time; behind queues the three
// stages (reassembly and parsing, anonymizing, writing) share the cores.
// Records wait in memory, in batches, as they waited in the trace
// writer's buffer before: nothing reaches disk unanonymized, order is
// kept, and a flush hands on what is held.
type sink struct {
	scrub    Scrubber
	w        RecordWriter
	batch    []trace.Record
	queue    chan []trace.Record // to the anonymizer
	scrubbed chan []trace.Record // to the writer
	done     chan struct{}
	started  bool
	closed   bool
	written  atomic.Uint64

	mu  sync.Mutex
	err error
}

const (
	sinkBatch = 256 // records handed on at once
	sinkQueue = 4   // batches waiting at most: capture slows to the writer's pace beyond
)

func newSink(scrub Scrubber) *sink {
	return &sink{scrub: scrub, queue: make(chan []trace.Record, sinkQueue), scrubbed: make(chan []trace.Record, sinkQueue),
		done: make(chan struct{}), batch: make([]trace.Record, 0, sinkBatch)}
}

// start begins writing to w; records added before are held until then.
func (s *sink) start(w RecordWriter) {
	s.w, s.started = w, true
	go s.anonymize()
	go s.write()
}

// add queues a record; once the writer has failed, records are dropped
// (the capture stops on the error, which Run returns).
func (s *sink) add(r trace.Record) {
	s.batch = append(s.batch, r)
	if len(s.batch) >= sinkBatch {
		s.flush()
	}
}

// flush hands on the records held, so that a quiet live capture writes
// what it has within the trace writer's flush interval.
func (s *sink) flush() {
	if len(s.batch) == 0 || !s.started {
		return
	}
	s.queue <- s.batch
	s.batch = make([]trace.Record, 0, sinkBatch)
}

func (s *sink) anonymize() {
	defer close(s.scrubbed)
	for b := range s.queue {
		if s.scrub != nil && s.failed() == nil {
			for _, r := range b {
				s.scrub.Record(r)
			}
		}
		s.scrubbed <- b
	}
}

func (s *sink) write() {
	defer close(s.done)
	for b := range s.scrubbed {
		for _, r := range b {
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
	if !s.started || s.closed {
		return s.failed()
	}
	s.closed = true
	s.flush()
	close(s.queue)
	<-s.done
	return s.failed()
}
