package replay

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms kept for every replay, in microseconds.
const (
	HistLatency   = "latency"    // request: to the answer's last byte
	HistTTFB      = "ttfb"       // request: to the answer's first byte
	HistSendError = "send_error" // request: how late the replayer sent it
	HistWSRTT     = "ws_rtt"     // WebSocket message round trip
)

// Tally counts results as they come; it is safe for concurrent use.
type Tally struct {
	mu    sync.Mutex
	sum   Summary
	hists map[string]*hdrhistogram.Histogram
}

// Summary is a tally's figures: counts, error classes and percentiles.
type Summary struct {
	Wall     time.Duration  `json:"wall_ns"` // how long the replay ran
	Requests int            `json:"requests"`
	OK       int            `json:"ok"`     // answered as recorded
	Failed   int            `json:"failed"` // in a class that counts against the proxy
	Errors   map[string]int `json:"errors,omitempty"`
	Statuses map[int]int    `json:"statuses,omitempty"`
	Bytes    int64          `json:"bytes"`
	Reconns  int            `json:"reconnects,omitempty"`

	Sessions       int            `json:"sessions"`
	Connected      int            `json:"connected"`
	FramesSent     int            `json:"frames_sent"`
	FramesWant     int            `json:"frames_want"`
	FramesReceived int            `json:"frames_received"`
	FramesExpected int            `json:"frames_expected"`
	FramesMatched  int            `json:"frames_matched"`
	SessionErrors  map[string]int `json:"session_errors,omitempty"`

	// Percentiles per histogram (µs), and the histograms themselves.
	Percentiles map[string]Percentiles            `json:"percentiles"`
	Histograms  map[string]*hdrhistogram.Snapshot `json:"histograms"`
}

// Percentiles of one histogram, in microseconds.
type Percentiles struct {
	Count int64 `json:"count"`
	P50   int64 `json:"p50"`
	P90   int64 `json:"p90"`
	P99   int64 `json:"p99"`
	Max   int64 `json:"max"`
}

// NewHistogram makes a histogram as every latency here is kept: in
// microseconds, 1 µs to 1 hour, 3 significant figures.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
}

// Record adds d to a NewHistogram (at least 1 µs, at most its top).
func Record(h *hdrhistogram.Histogram, d time.Duration) {
	_ = h.RecordValue(min(max(1, d.Microseconds()), h.HighestTrackableValue()))
}

// PercentilesOf reads a histogram's percentiles.
func PercentilesOf(h *hdrhistogram.Histogram) Percentiles {
	return Percentiles{Count: h.TotalCount(), P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99), Max: h.Max()}
}

// NewTally starts an empty tally.
func NewTally() *Tally {
	t := &Tally{hists: map[string]*hdrhistogram.Histogram{}}
	for _, name := range []string{HistLatency, HistTTFB, HistSendError, HistWSRTT} {
		t.hists[name] = NewHistogram()
	}
	t.sum.Errors, t.sum.Statuses, t.sum.SessionErrors = map[string]int{}, map[int]int{}, map[string]int{}
	return t
}

func (t *Tally) record(name string, d time.Duration) { Record(t.hists[name], d) }

// AddRequest counts one request.
func (t *Tally) AddRequest(r *Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.sum
	s.Requests++
	switch {
	case r.Error == "":
		s.OK++
	case Failed(r.Error):
		s.Failed++
	}
	if r.Error != "" {
		s.Errors[r.Error]++
	}
	if r.Status != 0 {
		s.Statuses[r.Status]++
	}
	s.Bytes += r.Bytes
	if r.Reconnect {
		s.Reconns++
	}
	if r.Sent > 0 {
		t.record(HistSendError, max(0, r.Sent-r.TS-r.Held))
	}
	if r.TTFB > 0 {
		t.record(HistTTFB, r.TTFB)
	}
	if r.TTLB > 0 && r.Error == "" {
		t.record(HistLatency, r.TTLB)
	}
}

// AddSession counts one WebSocket session.
func (t *Tally) AddSession(ws *Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.sum
	s.Sessions++
	if ws.Connected {
		s.Connected++
	}
	s.FramesSent += ws.Sent
	s.FramesWant += ws.Want
	s.FramesReceived += ws.Received
	s.FramesExpected += ws.WantReceived
	s.FramesMatched += ws.Matched
	if ws.Error != "" {
		s.SessionErrors[ws.Error]++
	}
	for _, us := range ws.RTT {
		t.record(HistWSRTT, time.Duration(us)*time.Microsecond)
	}
}

// Summary returns the figures so far; wall is how long the replay ran.
func (t *Tally) Summary(wall time.Duration) *Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.sum
	out.Wall = wall
	out.Errors, out.Statuses, out.SessionErrors = maps.Clone(t.sum.Errors), maps.Clone(t.sum.Statuses), maps.Clone(t.sum.SessionErrors)
	out.Percentiles = map[string]Percentiles{}
	out.Histograms = map[string]*hdrhistogram.Snapshot{}
	for _, name := range slices.Sorted(maps.Keys(t.hists)) {
		h := t.hists[name]
		out.Percentiles[name] = PercentilesOf(h)
		out.Histograms[name] = h.Export()
	}
	return &out
}
