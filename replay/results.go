package replay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hubreplay/hubreplay/trace"
)

// ResultsFormat names results files in their header. They use the trace's
// framing (trace/FORMAT.md): zstd frames of JSON lines, flushed at least
// once a second, so a replay killed at any moment keeps all but its last
// second, and `zstd -dc RESULTS` shows them.
const ResultsFormat = "hubreplay-results"

// Record types of a results file, after its header: one run record per
// replaying process (shards merged keep each), then req and ws records in
// completion order, then an end record per process.
const (
	TypeRun     trace.Type = "run"
	TypeRequest trace.Type = "req"
	TypeSession trace.Type = "session"
	TypeEnd     trace.Type = "end"
)

// Error classes of a request or session. An empty class is an answer as
// the trace recorded it.
const (
	ErrConnectRefused = "connect_refused" // nothing listened: the proxy was down
	ErrConnect        = "connect_error"   // the connection could not be made otherwise (timeout, …)
	ErrReset          = "reset"           // the proxy reset the connection
	ErrClosed         = "closed"          // the proxy closed the connection before the answer ended
	ErrTimeout        = "timeout"         // no (whole) answer in time
	ErrProxy5xx       = "proxy_5xx"       // a 5xx the proxy made itself (the fixtures did not send it)
	ErrRouteMissing   = "route_missing"   // the proxy sent a user's request to the hub: it had no route
	// ErrLateForRoute: no route either, but the replayer sent the request
	// after the recording (and the hub stub) had deleted it, or before the
	// hub stub, waking late, had added it: the harness reordered cause and
	// effect; not the proxy's failure.
	ErrLateForRoute = "late_for_route"
	ErrMismatch     = "mismatch"    // an answer from the fixtures, but not the recorded status
	ErrBackend5xx   = "backend_5xx" // the recorded 5xx, from the fixtures: as recorded, not a failure
	ErrCancelled    = "cancelled"   // the replay was stopped (--duration, Ctrl-C) first
)

// Failed says whether a class counts against the proxy.
func Failed(class string) bool {
	return class != "" && class != ErrBackend5xx && class != ErrCancelled && class != ErrLateForRoute
}

// Run says what was replayed, and how: the first record of a results file.
type Run struct {
	Trace      string        `json:"trace"`       // the trace's file name
	TraceStart time.Time     `json:"trace_start"` // its header's start
	Source     string        `json:"source"`      // its header's source
	Target     string        `json:"target"`
	Speed      float64       `json:"speed"` // 0: as fast as possible
	Users      int           `json:"users"`
	Jitter     time.Duration `json:"jitter_ns,omitempty"`
	Seed       uint64        `json:"seed"`
	From       time.Duration `json:"from_ns"`
	To         time.Duration `json:"to_ns,omitempty"`
	Shard      string        `json:"shard"`
	Length     time.Duration `json:"length_ns"` // trace time covered
	Conns      int           `json:"conns"`
	Requests   int           `json:"requests"`
	Sessions   int           `json:"sessions"`
	// ClientFrames and ServerFrames are what the plan sends and expects.
	ClientFrames int `json:"client_frames"`
	ServerFrames int `json:"server_frames"`
	Skipped      int `json:"skipped,omitempty"` // WebSocket sessions the window cut
	// Vanished: connections whose recorded client vanished (Plan.Vanished).
	Vanished int `json:"vanished,omitempty"`
}

// Request is what happened to one replayed request. Times are wall-clock
// offsets from the replay's start (the results header's start).
type Request struct {
	// TS is when the recording says to send it (its recorded time,
	// scaled); Held how much longer the previous answer on the same
	// connection kept it waiting; Sent when it went out. Sent − (TS +
	// Held) is the replayer's own timing error.
	TS   time.Duration `json:"ts"`
	Held time.Duration `json:"held_ns,omitempty"`
	// Lag is how late the replayer itself got to the request: woken after
	// its time (or after the answer that held it back), before any dial.
	// A replayer starved of processor time lags; a slow candidate does not
	// make it lag. The harness's own lateness, for the saturation check.
	Lag  time.Duration `json:"lag_ns,omitempty"`
	Sent time.Duration `json:"sent_ns"`
	// TTFB and TTLB are the latency to the answer's first and last byte,
	// from Sent.
	TTFB time.Duration `json:"ttfb_ns,omitempty"`
	TTLB time.Duration `json:"ttlb_ns,omitempty"`

	Conn   uint64 `json:"conn"`
	Clone  int    `json:"clone,omitempty"`
	Record int64  `json:"record"`
	Method string `json:"method"`
	Target string `json:"target"`
	// Status and Bytes are the answer's; Want and WantBytes the
	// recording's (Want 0: the recording has no answer).
	Status    int   `json:"status,omitempty"`
	Want      int   `json:"want,omitempty"`
	Bytes     int64 `json:"bytes"`
	WantBytes int64 `json:"want_bytes"`
	// By is who answered: "user" (an emulated user server), "hub", or ""
	// (the proxy itself, or nobody).
	By        string `json:"by,omitempty"`
	Reconnect bool   `json:"reconnect,omitempty"` // it needed a new connection: the proxy had closed the last one
	Error     string `json:"error,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// Session is what happened to one replayed WebSocket session.
type Session struct {
	TS        time.Duration `json:"ts"`     // when its upgrade was due
	Length    time.Duration `json:"len_ns"` // from the upgrade's answer to the end
	Conn      uint64        `json:"conn"`
	Clone     int           `json:"clone,omitempty"`
	Record    int64         `json:"record"` // the upgrade's
	Target    string        `json:"target"`
	Connected bool          `json:"connected"`
	// Frames the client sent (of Want), and server frames received (of
	// WantReceived), Matched those that came in the recorded order with
	// the recorded opcode and length.
	Sent         int `json:"sent"`
	Want         int `json:"want"`
	Received     int `json:"received"`
	WantReceived int `json:"want_received"`
	Matched      int `json:"matched"`
	// RTT are message round trips (µs): from a client frame's send to the
	// arrival of the first server frame the recording had after it.
	RTT []int64 `json:"rtt_us,omitempty"`
	// MaxLag is the latest a client frame went out after it was due.
	MaxLag time.Duration `json:"max_lag_ns,omitempty"`
	// Close is how the session ended, WantClose how the recording's did:
	// "client_close", "client_reset", "server_close", "server_reset",
	// "server_eof", "end".
	Close     string `json:"close"`
	WantClose string `json:"want_close"`
	Error     string `json:"error,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// End closes one process's results: how long the replay ran and its tally.
type End struct {
	TS        time.Duration `json:"ts"`
	Cancelled bool          `json:"cancelled,omitempty"`
	Tally     *Summary      `json:"tally"`
}

func (*Run) Type() trace.Type     { return TypeRun }
func (*Request) Type() trace.Type { return TypeRequest }
func (*Session) Type() trace.Type { return TypeSession }
func (*End) Type() trace.Type     { return TypeEnd }

// The trace reader decodes replay's records into these types, once.
func init() {
	trace.Register(TypeRun, func() trace.Record { return new(Run) })
	trace.Register(TypeRequest, func() trace.Record { return new(Request) })
	trace.Register(TypeSession, func() trace.Record { return new(Session) })
	trace.Register(TypeEnd, func() trace.Record { return new(End) })
}

func (*Run) Time() time.Duration       { return 0 }
func (r *Request) Time() time.Duration { return r.TS }
func (s *Session) Time() time.Duration { return s.TS }
func (e *End) Time() time.Duration     { return e.TS }

// CreateResults starts a results file.
func CreateResults(path, note string, overwrite bool) (*trace.Writer, error) {
	w, err := trace.Create(path, trace.Header{Format: ResultsFormat, Version: trace.Version, Source: "replay", Note: note}, &trace.WriterOptions{Overwrite: overwrite})
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	return w, nil
}

// Results is one results file, read whole.
type Results struct {
	Path     string
	Header   trace.Header
	Runs     []*Run
	Requests []*Request
	Sessions []*Session
	Ends     []*End
	// Other are records of other types (the proxy samples compare adds,
	// decoded by the package that registered them, or kept as
	// *trace.Unknown), in file order.
	Other []trace.Record
}

// ReadResults reads a results file. A damaged or truncated file returns
// what it holds before the damage, with the error.
func ReadResults(ctx context.Context, path string) (*Results, error) {
	r, err := trace.OpenFormat(path, ResultsFormat)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readResults(ctx, r, path)
}

// NewResultsReader reads results from src.
func NewResultsReader(ctx context.Context, src io.Reader, name string) (*Results, error) {
	r, err := trace.NewReaderFormat(src, name, ResultsFormat)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readResults(ctx, r, name)
}

func readResults(ctx context.Context, r *trace.Reader, path string) (*Results, error) {
	res := &Results{Path: path, Header: *r.Header()}
	err := r.Each(ctx, nil, func(rec trace.Record) error {
		switch v := rec.(type) {
		case *trace.Header:
		case *Run:
			res.Runs = append(res.Runs, v)
		case *Request:
			res.Requests = append(res.Requests, v)
		case *Session:
			res.Sessions = append(res.Sessions, v)
		case *End:
			res.Ends = append(res.Ends, v)
		default:
			res.Other = append(res.Other, rec)
		}
		return nil
	})
	var damage *trace.DamageError
	if errors.As(err, &damage) {
		return res, err // it names the file and where
	}
	if err != nil {
		return res, fmt.Errorf("read results %s: %w", path, err)
	}
	return res, nil
}

// Append adds another file's records (another shard's, say) to r.
func (r *Results) Append(o *Results) {
	r.Runs = append(r.Runs, o.Runs...)
	r.Requests = append(r.Requests, o.Requests...)
	r.Sessions = append(r.Sessions, o.Sessions...)
	r.Ends = append(r.Ends, o.Ends...)
	r.Other = append(r.Other, o.Other...)
}

// Tally counts the results afresh from their records.
func (r *Results) Tally() *Summary {
	t := NewTally()
	for _, q := range r.Requests {
		t.AddRequest(q)
	}
	for _, s := range r.Sessions {
		t.AddSession(s)
	}
	var wall time.Duration
	for _, e := range r.Ends {
		wall = max(wall, e.TS)
	}
	return t.Summary(wall)
}

// Merge writes the results of several replay processes (shards) as one
// file: every run record, the requests and sessions in time order, and an
// end record with the tally of them all.
func Merge(ctx context.Context, out string, overwrite bool, inputs ...string) (*Summary, error) {
	return MergeAnd(ctx, out, overwrite, nil, inputs...)
}

// sameRun checks that the inputs are the shards of one run, each once and
// none missing: the same trace, window, speed, users, jitter, seed and
// target. Anything else would merge into figures of no run at all.
func sameRun(all []*Results, inputs []string) error {
	var first *Run
	firstIn := ""
	seen := map[int]string{}
	count := 0
	for i, res := range all {
		if len(res.Runs) == 0 {
			return fmt.Errorf("merge: %s has no run record: it is not a replay's results, or was cut before its first record", inputs[i])
		}
		for _, run := range res.Runs {
			if first == nil {
				first, firstIn = run, inputs[i]
			}
			if d := runDiff(first, run); d != "" {
				return fmt.Errorf("merge: %s and %s are results of different runs (%s)", firstIn, inputs[i], d)
			}
			sh, err := ParseShard(run.Shard)
			if err != nil {
				return fmt.Errorf("merge: %s: %w", inputs[i], err)
			}
			if count == 0 {
				count = sh.Count
			}
			if sh.Count != count {
				return fmt.Errorf("merge: %s is shard %s, %s one of %d shards: results of different runs", inputs[i], run.Shard, firstIn, count)
			}
			if prev, ok := seen[sh.Index]; ok {
				return fmt.Errorf("merge: %s and %s are both shard %s", prev, inputs[i], run.Shard)
			}
			seen[sh.Index] = inputs[i]
		}
	}
	var missing []string
	for i := range count {
		if _, ok := seen[i]; !ok {
			missing = append(missing, Shard{i, count}.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("merge: shard %s of this run is missing; merge all %d shards", strings.Join(missing, ", "), count)
	}
	return nil
}

// runDiff names what makes two run records different runs ("" if nothing).
func runDiff(a, b *Run) string {
	switch {
	case a.Trace != b.Trace || !a.TraceStart.Equal(b.TraceStart):
		return fmt.Sprintf("trace %s against %s", a.Trace, b.Trace)
	case a.Speed != b.Speed:
		return fmt.Sprintf("speed %s against %s", SpeedString(a.Speed), SpeedString(b.Speed))
	case a.Seed != b.Seed:
		return fmt.Sprintf("seed %d against %d", a.Seed, b.Seed)
	case a.Users != b.Users:
		return fmt.Sprintf("users ×%d against ×%d", a.Users, b.Users)
	case a.From != b.From || a.To != b.To:
		return "different windows of the trace"
	case a.Jitter != b.Jitter:
		return fmt.Sprintf("jitter %s against %s", a.Jitter, b.Jitter)
	case a.Target != b.Target:
		return fmt.Sprintf("target %s against %s", a.Target, b.Target)
	}
	return ""
}

// MergeAnd is Merge, and more writes further records into the merged file
// before its end record (a backend's records of the candidate, say).
func MergeAnd(ctx context.Context, out string, overwrite bool, more func(RecordWriter) error, inputs ...string) (*Summary, error) {
	if len(inputs) == 0 {
		return nil, errors.New("merge: no results to merge")
	}
	var all []*Results
	for _, in := range inputs {
		res, err := ReadResults(ctx, in)
		if err != nil {
			return nil, err
		}
		all = append(all, res)
	}
	if err := sameRun(all, inputs); err != nil {
		return nil, err
	}
	merged := &Results{Header: all[0].Header}
	for _, res := range all {
		merged.Append(res)
	}
	slices.SortStableFunc(merged.Requests, func(a, b *Request) int { return cmp.Compare(a.TS, b.TS) })
	slices.SortStableFunc(merged.Sessions, func(a, b *Session) int { return cmp.Compare(a.TS, b.TS) })
	sum := merged.Tally()
	w, err := trace.Create(out, trace.Header{Format: ResultsFormat, Version: trace.Version, Start: merged.Header.Start, Source: "merge", Note: fmt.Sprintf("%d results merged", len(inputs))}, &trace.WriterOptions{Overwrite: overwrite})
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	var recs []trace.Record
	for _, r := range merged.Runs {
		recs = append(recs, r)
	}
	for _, r := range merged.Requests {
		recs = append(recs, r)
	}
	for _, r := range merged.Sessions {
		recs = append(recs, r)
	}
	for _, r := range merged.Other {
		recs = append(recs, r)
	}
	cancelled := false
	for _, e := range merged.Ends {
		cancelled = cancelled || e.Cancelled
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			w.Close()
			return nil, fmt.Errorf("merge into %s: %w", out, err)
		}
	}
	if more != nil {
		if err := more(w); err != nil {
			w.Close()
			return nil, fmt.Errorf("merge into %s: %w", out, err)
		}
	}
	if err := w.Write(&End{TS: sum.Wall, Cancelled: cancelled, Tally: sum}); err != nil {
		w.Close()
		return nil, fmt.Errorf("merge into %s: %w", out, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("merge into %s: %w", out, err)
	}
	return sum, nil
}
