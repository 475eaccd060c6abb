package compare

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

// Probe measures how fast this machine's harness can replay a trace: it
// replays the trace (or a stretch of it) against one candidate at rising speeds,
// each behind fresh fixtures as compare runs it, and finds the highest
// speed at which the harness did not saturate. What it finds goes to the
// capacity file, where compare reads it before a run.
type Probe struct {
	TraceName string
	Spec      proxy.Spec
	Index     *fixtures.Index
	// PlanAt builds a step's plan at a speed.
	PlanAt func(ctx context.Context, speed float64) (*replay.Plan, error)
	// Speeds are tried in rising order until one saturates; when the
	// first does, lower ones (halving) until one holds.
	Speeds  []float64
	Timeout time.Duration
	Dir     string // a results file per step, probe-SPEED.results
	Cache   *proxy.Cache
	Log     *slog.Logger
	// Step, if set, hears each step's outcome as it comes.
	Step  func(ProbeStep)
	Watch func(role, spec, stage string, run *replay.Runner)
}

// ProbeStep is one replay of the probe.
type ProbeStep struct {
	Speed   float64  `json:"speed"`
	Peak    float64  `json:"peak_requests_per_s"`
	Harness *Harness `json:"harness"`
	// Candidate is the candidate's side (nil if it was never up): at
	// high speeds it, not the harness, may set the pace.
	Candidate *Resources `json:"candidate"`
	Results   string     `json:"results"`
}

// ProbeResult is what the probe found: Held the highest speed that did not
// saturate the harness (0: none did), Saturated the lowest that did (0:
// none did).
type ProbeResult struct {
	Steps             []ProbeStep
	Held, Saturated   float64
	HeldPeak, SatPeak float64 // their peak request rates
	// KeptUp is the highest speed that held at which the candidate was
	// not its own bottleneck either (0: none): up to it a comparison
	// tests the trace, beyond it the candidates' throughput.
	KeptUp float64
}

// MinStepWall is how long a probe step replays at the least: a step of a
// few seconds ends before a full machine shows (at 70x a 6¾-minute stretch
// is under 6 seconds), and the saturation rule counts busy seconds.
const MinStepWall = time.Minute

// StepWindow is the trace time a probe step at speed replays: stretch
// ending with the busiest minute, longer at high speeds so that the step
// lasts MinStepWall (reaching back to the trace's start, then on towards
// its end, where a peak's rate holds), never beyond the trace (length).
func StepWindow(busiest trace.Window, stretch time.Duration, speed float64, length time.Duration) trace.Window {
	n := max(stretch, time.Duration(float64(MinStepWall)*speed))
	from := max(0, busiest.To-n)
	return trace.Window{From: from, To: min(length, max(busiest.To, from+n))}
}

// RunProbe runs the probe and adds each step to capacity (saved as it
// goes; nil: a quick look, kept nowhere).
func RunProbe(ctx context.Context, p Probe, capacity *Capacity) (*ProbeResult, error) {
	if len(p.Speeds) == 0 || p.PlanAt == nil || p.Index == nil {
		return nil, errors.New("capacity probe: no speeds, plan or fixtures index")
	}
	speeds := slices.Sorted(slices.Values(p.Speeds))
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("capacity probe: %w", err)
	}
	prog, err := proxy.Obtain(ctx, p.Spec, p.Cache)
	if err != nil {
		return nil, fmt.Errorf("capacity probe: obtain %s: %w", p.Spec, err)
	}
	res := &ProbeResult{}
	try := func(speed float64) (bool, error) {
		plan, err := p.PlanAt(ctx, speed)
		if err != nil {
			return false, err
		}
		o := &Options{TraceName: p.TraceName, Plan: plan, Index: p.Index, Settle: time.Second, Timeout: p.Timeout,
			Dir: p.Dir, Force: true, Cache: p.Cache, Log: p.Log, Watch: p.Watch}
		results := filepath.Join(p.Dir, "probe-"+replay.SpeedString(speed)+".results")
		if err := runOne(ctx, o, RunSpec{Role: "at " + replay.SpeedString(speed), Spec: p.Spec, Results: results}, prog); err != nil {
			return false, fmt.Errorf("capacity probe at %s: %w", replay.SpeedString(speed), err)
		}
		r, err := readRun(ctx, results)
		if err != nil {
			return false, fmt.Errorf("capacity probe at %s: %w", replay.SpeedString(speed), err)
		}
		f := r.figures(RoleA)
		h := f.Harness
		if h == nil || h.Samples == 0 {
			return false, fmt.Errorf("capacity probe at %s: the harness took no samples of the processors", replay.SpeedString(speed))
		}
		overloaded := f.SetThePace()
		step := ProbeStep{Speed: speed, Peak: plan.PeakRate(), Harness: h, Candidate: f.Proxy, Results: results}
		res.Steps = append(res.Steps, step)
		if p.Step != nil {
			p.Step(step)
		}
		if capacity != nil {
			capacity.Add(p.Spec.Raw, step.Peak, h.Saturated, overloaded)
			if err := capacity.Save(); err != nil {
				return false, err
			}
		}
		if h.Saturated {
			if res.Saturated == 0 || speed < res.Saturated {
				res.Saturated, res.SatPeak = speed, step.Peak
			}
		} else if speed > res.Held {
			res.Held, res.HeldPeak = speed, step.Peak
		}
		if !h.Saturated && f.Proxy != nil && !overloaded {
			res.KeptUp = max(res.KeptUp, speed)
		}
		return h.Saturated, ctx.Err()
	}
	for _, s := range speeds {
		sat, err := try(s)
		if err != nil {
			return res, err
		}
		if sat {
			break
		}
	}
	// Too fast from the start: halve until one holds.
	for s := speeds[0] / 2; res.Held == 0 && s >= 0.5; s /= 2 {
		if _, err := try(s); err != nil {
			return res, err
		}
	}
	// Between the highest that held and the lowest that did not, once.
	if res.Held > 0 && res.Saturated > 0 {
		mid := math.Round(math.Sqrt(res.Held * res.Saturated))
		if mid > res.Held && mid < res.Saturated {
			if _, err := try(mid); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}
