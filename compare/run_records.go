package compare

import (
	"time"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/internal/cpustat"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/trace"
)

// Record types compare adds to a candidate's results file, beside
// replay's (replay.Results keeps them in Other), so that `hubreplay
// report` can render a comparison again from the files alone. Their ts
// is wall-clock time from replay time 0: negative before the replay began.
const (
	TypeCandidate trace.Type = "candidate"
	TypeSample    trace.Type = "proxy_sample"
	TypeExit      trace.Type = "proxy_exit"
	TypeAPICall   trace.Type = "route_api"
	TypeHarness   trace.Type = "harness_sample"
)

// Roles of the runs in a comparison.
const (
	RoleA     = "A"
	RoleB     = "B"
	RoleNoise = "A'" // A again, to measure run-to-run noise
)

// Candidate says which candidate a results file belongs to, and how it ran.
type Candidate struct {
	TS      time.Duration `json:"ts"`
	Role    string        `json:"role"`
	Spec    string        `json:"spec"`
	Version string        `json:"version"`
	Backend string        `json:"backend"`
	Limit   string        `json:"memory_limit"`
	// Started is the wall-clock time of replay time 0.
	Started time.Time `json:"started"`
	// Settle is how long the candidate stood idle after the replay,
	// before its last sample: what it does not give back is a leak.
	Settle time.Duration `json:"settle_ns"`
	// TimeWait is how many sockets on the machine were in TIME_WAIT when
	// the run started, after waiting for an earlier run's to expire
	// (WaitedTW: how many there were before, Waited: how long).
	TimeWait int           `json:"time_wait_at_start,omitempty"`
	WaitedTW int           `json:"time_wait_before,omitempty"`
	Waited   time.Duration `json:"time_wait_waited_ns,omitempty"`
}

// Sample is one resource sample of the candidate.
type Sample struct {
	TS time.Duration `json:"ts"`
	proxy.Sample
}

// Exit is one exit of the candidate (a crash, a kill, the final stop).
type Exit struct {
	TS time.Duration `json:"ts"`
	proxy.Exit
}

// HarnessSample is how the machine's processors were used over the second
// before TS: by everyone, by hubreplay itself (the replayer and the
// fixtures), lost to the hypervisor; the candidate's own share is in its
// samples. With them a run tells whether the harness was the bottleneck.
type HarnessSample struct {
	TS time.Duration `json:"ts"`
	cpustat.Shares
	// Fixtures is how late the fixtures woke for their answers and frames
	// over that second.
	Fixtures fixtures.LateCount `json:"fixtures"`
}

func (*HarnessSample) Type() trace.Type      { return TypeHarness }
func (h *HarnessSample) Time() time.Duration { return h.TS }

// APICall is one call the hub stub made to the candidate's routes API.
type APICall struct {
	TS      time.Duration `json:"ts"`
	Why     string        `json:"why"`
	Method  string        `json:"method"`
	Path    string        `json:"path"`
	Status  int           `json:"status,omitempty"`
	Latency time.Duration `json:"latency_ns"`
	Lag     time.Duration `json:"lag_ns,omitempty"` // how late the stub woke for it
	Err     string        `json:"err,omitempty"`
}

func apiCall(c fixtures.APICall, start time.Time) *APICall {
	return &APICall{TS: c.At.Sub(start), Why: c.Why, Method: c.Method, Path: c.Path, Status: c.Status, Latency: c.Latency, Lag: c.Lag, Err: c.Err}
}

// The trace reader decodes compare's records into these types, once.
func init() {
	trace.Register(TypeCandidate, func() trace.Record { return new(Candidate) })
	trace.Register(TypeSample, func() trace.Record { return new(Sample) })
	trace.Register(TypeExit, func() trace.Record { return new(Exit) })
	trace.Register(TypeAPICall, func() trace.Record { return new(APICall) })
	trace.Register(TypeHarness, func() trace.Record { return new(HarnessSample) })
}

func (*Candidate) Type() trace.Type { return TypeCandidate }
func (*Sample) Type() trace.Type    { return TypeSample }
func (*Exit) Type() trace.Type      { return TypeExit }
func (*APICall) Type() trace.Type   { return TypeAPICall }

func (c *Candidate) Time() time.Duration { return c.TS }
func (s *Sample) Time() time.Duration    { return s.TS }
func (e *Exit) Time() time.Duration      { return e.TS }
func (a *APICall) Time() time.Duration   { return a.TS }
