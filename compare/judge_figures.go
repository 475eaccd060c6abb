package compare

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

// Figures are one run's numbers. Latencies are in microseconds, as in
// replay's percentiles; memory in bytes; times of day are trace time.
type Figures struct {
	Role    string `json:"role"`
	Spec    string `json:"spec"`
	Version string `json:"version,omitempty"`
	Results string `json:"results"`
	Limit   string `json:"memory_limit,omitempty"`

	Speed  float64       `json:"speed"`
	Length time.Duration `json:"trace_length_ns"` // trace time replayed
	Wall   time.Duration `json:"wall_ns"`         // how long the replay took
	// Conns are the trace's client connections (the same for every run,
	// so that figures per connection compare; a proxy that closes after
	// each answer makes the replay reconnect more).
	Conns int `json:"connections"`
	// Vanished are the trace's connections whose client vanished (a
	// reset, a close mid-answer): a leak is per 1,000 of them.
	Vanished int `json:"vanished_clients,omitempty"`

	Requests    int                `json:"requests"`
	OK          int                `json:"ok"`
	Failed      int                `json:"failed"`
	ErrorRate   float64            `json:"error_rate"` // Failed / Requests
	Errors      map[string]int     `json:"errors,omitempty"`
	ProxyStatus map[string]int     `json:"proxy_status,omitempty"` // statuses the proxy made itself (502, 503 …)
	Latency     replay.Percentiles `json:"latency_us"`
	// TypicalP99 is the p99 latency of a typical stretch of the trace:
	// the median of the p99s of the series' buckets that answered at least
	// minBucketRequests requests (the whole run's p99 if none did). The
	// whole run's p99 swings with a single pause of the proxy (A against
	// A: 19 to 61 ms at 20× here); a proxy slower throughout moves this.
	TypicalP99 float64            `json:"latency_p99_typical_ms"`
	TTFB       replay.Percentiles `json:"ttfb_us"`

	Sessions    int                `json:"ws_sessions"`
	Connected   int                `json:"ws_connected"`
	ConnectRate float64            `json:"ws_connect_rate"`
	FramesWant  int                `json:"ws_frames_expected"`
	FramesOK    int                `json:"ws_frames_matched"`
	Delivery    float64            `json:"ws_delivery"` // matched / expected server frames
	WSRTT       replay.Percentiles `json:"ws_rtt_us"`

	Proxy *Resources `json:"proxy,omitempty"` // nil: the results hold no samples (a plain replay)
	// Harness is how the replayer and the machine kept up.
	Harness *Harness `json:"harness,omitempty"`

	Restarts int              `json:"restarts"`
	Exits    []ExitFigure     `json:"exits,omitempty"`
	Logs     map[string]int64 `json:"log_lines,omitempty"` // counts of error lines by kind
	// FirstLogs: the first line of each kind, with the stack after it.
	FirstLogs map[string][]string `json:"first_log_lines,omitempty"`

	API APIFigures `json:"route_api"`

	Series Series `json:"series"`
}

// Silence is one stretch of unanswered liveness probes.
type Silence struct {
	From time.Duration `json:"from_ns"` // trace time
	Len  time.Duration `json:"len_ns"`  // wall time
}

// Longest is the longest silence, in seconds of wall time.
func (x *Resources) Longest() float64 {
	var l time.Duration
	for _, s := range x.Silences {
		l = max(l, s.Len)
	}
	return l.Seconds()
}

// Resources are what the candidate used, from its samples.
type Resources struct {
	Samples  int   `json:"samples"`
	RSSStart int64 `json:"rss_start"` // before the replay
	RSSPeak  int64 `json:"rss_peak"`
	RSSEnd   int64 `json:"rss_end"` // after standing idle (Settle)
	// RSSGrowth is RSSEnd − RSSStart: what the run left behind; per
	// minute of trace time and per 1,000 of the trace's client
	// connections, the leak signature.
	RSSGrowth     int64   `json:"rss_growth"`
	RSSPerMinute  float64 `json:"rss_growth_per_minute"`
	RSSPer1kConns float64 `json:"rss_growth_per_1k_connections"`
	HeapPeak      int64   `json:"heap_used_peak,omitempty"`
	FDsStart      int     `json:"fds_start"`
	FDsPeak       int     `json:"fds_peak"`
	FDsEnd        int     `json:"fds_end"`
	// Sockets are the descriptors that are sockets, in any state (a
	// leaked one may be reset and gone from the TCP table, yet open).
	SocketsStart int `json:"sockets_start"`
	SocketsPeak  int `json:"sockets_peak"`
	SocketsEnd   int `json:"sockets_end"`
	// TCPStates: the samples say sockets by TCP state (a local process's
	// do; a pod's, read from its kubelet, do not).
	TCPStates      bool           `json:"tcp_states"`
	CloseWaitStart int            `json:"close_wait_start"`
	CloseWaitPeak  int            `json:"close_wait_peak"`
	CloseWaitEnd   int            `json:"close_wait_end"`
	StatesEnd      map[string]int `json:"socket_states_end,omitempty"`
	CPUSeconds     float64        `json:"cpu_seconds"`
	// CPUPeak is the candidate's busiest stretch between two samples, in
	// cores; CPUBusy how many samples found it at CPUBusyAt of a core or
	// more: a proxy on one Node.js thread is then its own bottleneck.
	CPUPeak float64       `json:"cpu_peak_cores"`
	CPUBusy int           `json:"cpu_busy_samples"`
	Settle  time.Duration `json:"settle_ns"`
	// Unanswered counts samples (about one a second) whose liveness probe
	// got no answer while the process ran: a hang, not a crash;
	// UnansweredFrom is the trace time of the first.
	Unanswered     int           `json:"probes_unanswered"`
	UnansweredFrom time.Duration `json:"probes_unanswered_from_ns,omitempty"`
	// Silences are the stretches in which the liveness probe went
	// unanswered while the process ran: from (trace time) and how long
	// (wall time, the kubelet's clock).
	Silences []Silence `json:"silences,omitempty"`
	// Probed: hubreplay probed the candidate's liveness with its samples
	// (locally; in a cluster the kubelet does, and its restarts count).
	Probed bool `json:"probed"`
}

// CPUBusyAt is the share of one core at which a sample counts the
// candidate as busy.
const CPUBusyAt = 0.9

// Overloaded tells whether the candidate was at CPUBusyAt of a core or
// more for a tenth of the run (and 3 samples): then it, not the harness,
// set the pace, and the run tested its throughput more than the trace.
// A run without samples of the candidate (nil) was not.
func (x *Resources) Overloaded() bool {
	return x != nil && x.CPUBusy >= 3 && float64(x.CPUBusy) >= SaturatedShare*float64(x.Samples)
}

// SetThePace tells whether the candidate, not the trace, set the pace of
// the run: it was at a full core, or its slow answers held its requests
// back (Harness.Paced). Up to where no candidate does, a run tests the
// trace; beyond, the candidates' throughput on a shared machine.
func (f *Figures) SetThePace() bool { return f.Proxy.Overloaded() || f.Harness.Paced() }

// PerVanished is the incident's leak signature, per 1,000 of the trace's
// vanished clients: sockets left after idle (and of them, those in no TCP
// state: reset, yet their descriptors kept, 5.3.0's way), CLOSE_WAIT and
// ESTABLISHED sockets, memory kept, and the log lines of writes into the
// vanished (EPIPE, ECONNRESET, uncaught exceptions).
func (f *Figures) PerVanished() string {
	if f.Vanished == 0 {
		return "no client vanished"
	}
	per := func(n float64) float64 { return n * 1000 / float64(f.Vanished) }
	logs := fmt.Sprintf("%.0f, %.0f, %.0f", per(float64(f.Logs["epipe"])), per(float64(f.Logs["econnreset"])), per(float64(f.Logs["uncaught"])))
	x := f.Proxy
	if x == nil {
		return "not sampled / " + logs
	}
	states := "–"
	if x.TCPStates {
		states = fmt.Sprintf("%.0f / %.0f", per(float64(x.CloseWaitEnd)), per(float64(x.StatesEnd["ESTABLISHED"])))
	}
	return fmt.Sprintf("%.0f (%.0f) / %s / %.1f MiB / %s (of %d)", per(float64(x.SocketsLeft())), per(float64(x.StatelessEnd())), states, per(float64(x.RSSGrowth))/(1<<20), logs, f.Vanished)
}

// StatelessEnd is how many socket descriptors were in no TCP state after
// idle: reset or closed by the peer long ago, and still held (a local
// process's samples only).
func (r *Resources) StatelessEnd() int {
	if !r.TCPStates {
		return 0
	}
	n := r.SocketsEnd
	for st, c := range r.StatesEnd {
		if st != "TIME_WAIT" {
			n -= c
		}
	}
	return max(0, n)
}

// StatefulLeft is how many sockets the run left open in a TCP state
// (ESTABLISHED, CLOSE_WAIT …): all it left, where the samples carry no
// states.
func (r *Resources) StatefulLeft() int {
	return r.SocketsLeft() - r.StatelessEnd()
}

// SocketsLeft is how many sockets the run left open.
func (r *Resources) SocketsLeft() int { return r.SocketsEnd - r.SocketsStart }

// ExitFigure is one exit of the candidate during the run, and the window
// of failures after it.
type ExitFigure struct {
	At    time.Duration `json:"at_ns"` // trace time
	Cause string        `json:"cause"`
	// Window is the trace time from the exit until requests succeeded
	// again (ten in a row); Recovered false if they never did.
	Window    time.Duration `json:"window_ns"`
	Recovered bool          `json:"recovered"`
	Failed    int           `json:"failed"` // requests failed in the window
	// RoutesMissing counts the users' requests sent to the hub after the
	// exit (before the next one): the restarted proxy had lost its routes
	// and the hub had not put them back yet. MissingFor is the 503 window
	// the incident's users saw, in trace time: from the exit to the last
	// of them; the hub's next route check ends it.
	RoutesMissing int           `json:"routes_missing,omitempty"`
	MissingFor    time.Duration `json:"missing_for_ns,omitempty"`
}

// APIFigures are the hub stub's calls to the routes API.
type APIFigures struct {
	Calls   int                `json:"calls"`
	Failed  int                `json:"failed"`
	Latency replay.Percentiles `json:"latency_us"`
}

// Series are a run's figures over trace time, for plots.
type Series struct {
	Bucket  time.Duration `json:"bucket_ns"` // width of a bucket, trace time
	T       []float64     `json:"t_min"`     // bucket starts, minutes of trace time
	ReqRate []float64     `json:"req_per_s"` // requests sent per second of trace time
	ErrRate []float64     `json:"failed_per_s"`
	P50     []float64     `json:"p50_ms"` // latency of the requests sent in the bucket
	P99     []float64     `json:"p99_ms"`
	// Samples, at their own times.
	ST        []float64 `json:"sample_t_min"`
	RSS       []float64 `json:"rss_mib"`
	FDs       []float64 `json:"fds"`
	Estab     []float64 `json:"established"`
	CloseWait []float64 `json:"close_wait"`
	TimeWait  []float64 `json:"time_wait"`
	// Exits, in minutes of trace time.
	Exits []float64 `json:"exits_min,omitempty"`
}

// run is one results file, read.
type run struct {
	res            *replay.Results
	cand           *Candidate
	samples        []*Sample
	exits          []*Exit
	api            []*APICall
	harnessSamples []*HarnessSample
	// stretches are the buckets of run time the typical p99 is taken
	// from (set by series).
	stretches [][2]time.Duration
}

func readRun(ctx context.Context, path string) (*run, error) {
	res, err := replay.ReadResults(ctx, path)
	if err != nil {
		return nil, err
	}
	if len(res.Runs) == 0 {
		return nil, fmt.Errorf("%s: no run record (not replay results, or cut off at its start)", path)
	}
	r := &run{res: res}
	for _, rec := range res.Other {
		switch v := rec.(type) {
		case *Candidate:
			r.cand = v
		case *Sample:
			r.samples = append(r.samples, v)
		case *Exit:
			r.exits = append(r.exits, v)
		case *APICall:
			r.api = append(r.api, v)
		case *HarnessSample:
			r.harnessSamples = append(r.harnessSamples, v)
		}
	}
	slices.SortFunc(r.samples, func(a, b *Sample) int { return cmp.Compare(a.TS, b.TS) })
	return r, nil
}

// figures works out a run's numbers from its records.
func (r *run) figures(role string) *Figures {
	res := r.res
	first := res.Runs[0]
	sum := res.Tally()
	f := &Figures{Role: role, Spec: first.Target, Results: filepath.Base(res.Path), Speed: first.Speed, Length: first.Length,
		Wall: sum.Wall, Conns: first.Conns,
		Requests: sum.Requests, OK: sum.OK, Failed: sum.Failed, Errors: sum.Errors,
		Latency: sum.Percentiles[replay.HistLatency], TTFB: sum.Percentiles[replay.HistTTFB],
		Sessions: sum.Sessions, Connected: sum.Connected, FramesWant: sum.FramesExpected, FramesOK: sum.FramesMatched,
		WSRTT: sum.Percentiles[replay.HistWSRTT]}
	for _, rr := range res.Runs {
		f.Vanished += rr.Vanished
	}
	if c := r.cand; c != nil {
		f.Spec, f.Version, f.Limit = c.Spec, c.Version, c.Limit
	}
	// A session that never connected for a reason not the proxy's (the
	// harness sent its upgrade too late for its route, or the replay was
	// stopped) is not a session the proxy failed, nor are its frames.
	for _, ws := range res.Sessions {
		if !ws.Connected && (ws.Error == replay.ErrLateForRoute || ws.Error == replay.ErrCancelled) {
			f.Sessions--
			f.FramesWant -= ws.WantReceived
		}
	}
	f.ErrorRate = ratio(f.Failed, f.Requests)
	f.ConnectRate = ratio(f.Connected, f.Sessions)
	f.Delivery = ratio(f.FramesOK, f.FramesWant)
	if f.Sessions == 0 {
		f.ConnectRate = 1
	}
	if f.FramesWant == 0 {
		f.Delivery = 1
	}
	f.ProxyStatus = map[string]int{}
	for _, q := range res.Requests {
		if q.Error == replay.ErrProxy5xx {
			f.ProxyStatus[strconv.Itoa(q.Status)]++
		}
	}
	f.Proxy = r.resources(f)
	f.exits(r)
	f.API = r.apiFigures()
	f.Series = r.series(f)
	f.Harness = r.harness(f) // after the series: it judges the typical p99's stretches
	return f
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// resources reads the samples: before the replay (the first), at its
// peak, and after standing idle (the last).
func (r *run) resources(f *Figures) *Resources {
	var up []*Sample
	for _, s := range r.samples {
		for k, lines := range s.FirstLogs {
			if f.FirstLogs == nil {
				f.FirstLogs = map[string][]string{}
			}
			if _, ok := f.FirstLogs[k]; !ok {
				f.FirstLogs[k] = lines
			}
		}
		if s.Up {
			up = append(up, s)
		}
	}
	if len(up) == 0 {
		return nil
	}
	first, last := up[0], r.samples[len(r.samples)-1]
	x := &Resources{Samples: len(r.samples), RSSStart: first.RSS, RSSEnd: last.RSS, FDsStart: first.FDs, FDsEnd: last.FDs,
		SocketsStart: first.SocketFDs, SocketsEnd: last.SocketFDs,
		CloseWaitStart: first.Sockets["CLOSE_WAIT"], CloseWaitEnd: last.Sockets["CLOSE_WAIT"], StatesEnd: last.Sockets}
	if r.cand != nil {
		x.Settle = r.cand.Settle
	}
	cpu := map[int]time.Duration{} // per process: CPU is counted per life
	var prev *Sample
	for _, s := range up {
		if p := prev; p != nil && p.PID == s.PID && s.At.After(p.At) {
			cores := float64(s.CPU-p.CPU) / float64(s.At.Sub(p.At))
			x.CPUPeak = max(x.CPUPeak, cores)
			if cores >= CPUBusyAt {
				x.CPUBusy++
			}
		}
		prev = s
		x.RSSPeak = max(x.RSSPeak, s.RSS)
		x.FDsPeak = max(x.FDsPeak, s.FDs)
		x.SocketsPeak = max(x.SocketsPeak, s.SocketFDs)
		x.TCPStates = x.TCPStates || s.Sockets != nil
		x.CloseWaitPeak = max(x.CloseWaitPeak, s.Sockets["CLOSE_WAIT"])
		x.HeapPeak = max(x.HeapPeak, s.HeapUsed)
		cpu[s.PID] = max(cpu[s.PID], s.CPU)
		x.Probed = x.Probed || s.Probe > 0 || s.Unanswered
		if s.Unanswered {
			if x.Unanswered == 0 {
				x.UnansweredFrom = time.Duration(float64(s.TS) * f.scale())
			}
			x.Unanswered++
		}
	}
	x.Silences = silences(up, f.scale())
	for _, c := range cpu {
		x.CPUSeconds += c.Seconds()
	}
	x.RSSGrowth = x.RSSEnd - x.RSSStart
	if m := f.Length.Minutes(); m > 0 {
		x.RSSPerMinute = float64(x.RSSGrowth) / m
	}
	if f.Conns > 0 {
		x.RSSPer1kConns = float64(x.RSSGrowth) / float64(f.Conns) * 1000
	}
	if last.Logs != nil {
		f.Logs = last.Logs
	}
	return x
}

// silences finds the stretches of unanswered probes: one begins with the
// first unanswered probe (it was sent ProbeTimeout before its sample) and
// ends with the next answered one, or the last sample.
func silences(up []*Sample, scale float64) []Silence {
	var out []Silence
	var from time.Duration
	in := false
	for _, s := range up {
		switch {
		case s.Unanswered && !in:
			in, from = true, s.TS-proxy.ProbeTimeout
		case !s.Unanswered && in:
			in = false
			out = append(out, Silence{From: time.Duration(float64(from) * scale), Len: s.TS - from})
		}
	}
	if in {
		last := up[len(up)-1]
		out = append(out, Silence{From: time.Duration(float64(from) * scale), Len: last.TS - from})
	}
	return out
}

// scale turns replay time into trace time: the speed, or 1 at max speed,
// where "trace time" is wall time.
func (f *Figures) scale() float64 {
	if f.Speed <= 0 {
		return 1
	}
	return f.Speed
}

// recoveredAfter is how many requests in a row must succeed after an exit
// for its failure window to be over.
const recoveredAfter = 10

// exits lists the candidate's exits during the replay and the window of
// failed requests after each.
func (f *Figures) exits(r *run) {
	speed := f.scale()
	bySent := slices.Clone(r.res.Requests)
	slices.SortFunc(bySent, func(a, b *replay.Request) int { return cmp.Compare(a.Sent, b.Sent) })
	for _, e := range r.exits {
		if e.Stopped {
			continue
		}
		f.Restarts++
		x := ExitFigure{At: time.Duration(float64(e.TS) * speed), Cause: e.Cause}
		i, _ := slices.BinarySearchFunc(bySent, e.TS, func(q *replay.Request, t time.Duration) int { return cmp.Compare(q.Sent, t) })
		ok, end := 0, e.TS
		for _, q := range bySent[i:] {
			if replay.Failed(q.Error) {
				x.Failed++
				ok, end = 0, q.Sent
				continue
			}
			if ok++; ok == recoveredAfter {
				x.Recovered = true
				break
			}
		}
		if !x.Recovered && len(bySent) > i {
			end = bySent[len(bySent)-1].Sent
		}
		x.Window = time.Duration(float64(end-e.TS) * speed)
		next := time.Duration(1<<63 - 1)
		for _, e2 := range r.exits {
			if e2.TS > e.TS && e2.TS < next && !e2.Stopped {
				next = e2.TS
			}
		}
		for _, q := range bySent[i:] {
			if q.Sent >= next {
				break
			}
			if q.Error == replay.ErrRouteMissing {
				x.RoutesMissing++
				x.MissingFor = time.Duration(float64(q.Sent-e.TS) * speed)
			}
		}
		f.Exits = append(f.Exits, x)
	}
}

func (r *run) apiFigures() APIFigures {
	h := replay.NewHistogram()
	a := APIFigures{Calls: len(r.api)}
	for _, c := range r.api {
		if fixtures.Failed(c.Method, c.Status, c.Err) {
			a.Failed++
		}
		replay.Record(h, c.Latency)
	}
	a.Latency = replay.PercentilesOf(h)
	return a
}

// plotPoints is about how many buckets a plot gets.
const plotPoints = 120

// minBucketRequests is how many answered requests a bucket needs for its
// p99 to count towards the typical p99.
const minBucketRequests = 20

// series buckets the run over trace time.
func (r *run) series(f *Figures) Series {
	speed := f.scale()
	length := f.Length
	if f.Speed <= 0 {
		length = f.Wall
	}
	bucket := max(time.Second, (length / plotPoints).Round(time.Second))
	n := int(length/bucket) + 1
	s := Series{Bucket: bucket, T: make([]float64, n), ReqRate: make([]float64, n), ErrRate: make([]float64, n), P50: make([]float64, n), P99: make([]float64, n)}
	hists := make([]*hdrhistogram.Histogram, n)
	for i := range n {
		s.T[i] = (time.Duration(i) * bucket).Minutes()
	}
	for _, q := range r.res.Requests {
		if q.Sent <= 0 {
			continue
		}
		i := min(n-1, int(time.Duration(float64(q.Sent)*speed)/bucket))
		s.ReqRate[i]++
		if replay.Failed(q.Error) {
			s.ErrRate[i]++
		}
		if q.Error == "" && q.TTLB > 0 {
			if hists[i] == nil {
				hists[i] = replay.NewHistogram()
			}
			replay.Record(hists[i], q.TTLB)
		}
	}
	var typical []float64
	// runTime is where bucket i starts in run time, as requests were sent.
	runTime := func(i int) time.Duration { return time.Duration(float64(time.Duration(i)*bucket) / speed) }
	for i := range n {
		s.ReqRate[i] /= bucket.Seconds()
		s.ErrRate[i] /= bucket.Seconds()
		if h := hists[i]; h != nil {
			s.P50[i] = float64(h.ValueAtQuantile(50)) / 1000
			s.P99[i] = float64(h.ValueAtQuantile(99)) / 1000
			if h.TotalCount() >= minBucketRequests {
				typical = append(typical, s.P99[i])
				r.stretches = append(r.stretches, [2]time.Duration{runTime(i), runTime(i + 1)})
			}
		}
	}
	f.TypicalP99 = float64(f.Latency.P99) / 1000
	if len(typical) > 0 {
		slices.Sort(typical)
		f.TypicalP99 = typical[len(typical)/2]
	}
	for _, x := range r.samples {
		s.ST = append(s.ST, max(0, time.Duration(float64(x.TS)*speed).Minutes())) // the baseline is taken just before
		s.RSS = append(s.RSS, float64(x.RSS)/(1<<20))
		s.FDs = append(s.FDs, float64(x.FDs))
		s.Estab = append(s.Estab, float64(x.Sockets["ESTABLISHED"]))
		s.CloseWait = append(s.CloseWait, float64(x.Sockets["CLOSE_WAIT"]))
		s.TimeWait = append(s.TimeWait, float64(x.Sockets["TIME_WAIT"]))
	}
	for _, e := range f.Exits {
		s.Exits = append(s.Exits, e.At.Minutes())
	}
	return s
}

// sortedKeys is for stable output of count maps.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
