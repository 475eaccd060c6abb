package compare

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/hubreplay/hubreplay/replay"
)

// Capacity is what this machine's harness has held: the peak request rates
// of earlier local runs, and whether each saturated it. Before a run,
// compare says when the plan asks for a rate that saturated the machine
// before, and at what speed it would not.
type Capacity struct {
	Path string        `json:"-"`
	Runs []CapacityRun `json:"runs"`
}

// CapacityRun is one run's load and outcome.
type CapacityRun struct {
	At    time.Time `json:"at"`
	Cores int       `json:"cores"`
	// Candidate is the proxy that ran: the same traffic costs the harness
	// more through some (4.5.6 made it work up to 2.5 times as hard as 4.6.2).
	Candidate string  `json:"candidate,omitempty"`
	Peak      float64 `json:"peak_requests_per_s"`
	Saturated bool    `json:"saturated"`
	// Overloaded is true when the candidate set the pace (Figures.SetThePace):
	// it was at a full core for a tenth of the run, or its answers held
	// its requests back; it, not the trace, set the pace, and its figures strayed
	// from run to run (4.6.2 against itself at 40x on the 300-student peak:
	// longest probe silence 6 to 45 s, failed requests 0 to 2.5%).
	Overloaded bool `json:"candidate_overloaded,omitempty"`
	// Rule is the saturation rule the run was judged by (SaturationRule
	// then); runs judged by another rule do not count.
	Rule int `json:"rule,omitempty"`
}

// SaturationRule numbers the saturation rule in force. Raise it when the
// rule changes, so that what an older rule called held is not trusted.
// 2: a tenth of the typical latency's stretches on a full machine
// saturates a run too. 3: capacity's steps last a minute at least
// (StepWindow); what shorter steps held is not trusted. 4: only whole
// runs count (capacity's steps replay what compare would): a 10-minute
// stretch of the 300-student peak held 10x through chp@4.5.6 where the
// whole 30 minutes saturated the machine at 10x and 11x. 5: a candidate
// whose answers held its requests back set the pace as one at a full core
// did (4.5.6 on the demo at 50x: 97% held, at a full core for 8% of it).
const SaturationRule = 5

// maxCapacityRuns bounds the file: the newest runs are kept.
const maxCapacityRuns = 200

// LoadCapacity reads the capacity file (none yet is an empty record).
func LoadCapacity(path string) (*Capacity, error) {
	c := &Capacity{Path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err == nil {
		err = json.Unmarshal(b, c)
	}
	if err != nil {
		return c, fmt.Errorf("harness capacity %s: %w", path, err)
	}
	return c, nil
}

// Record adds the runs of a comparison at speed, whose peak asked for
// peak requests a second (Plan.PeakRate), and writes the file. It takes
// the two figures rather than the plan, so that the plan (and the trace's
// records behind it) need not stay in memory while the report is made.
func (c *Capacity) Record(speed, peak float64, rep *Report) error {
	if speed <= 0 {
		return nil // at max speed a peak rate says nothing of what was held
	}
	for _, f := range rep.Runs {
		if f.Harness == nil || f.Harness.Samples == 0 {
			continue // not run here (a cluster backend)
		}
		c.Add(f.Spec, peak, f.Harness.Saturated, f.SetThePace())
	}
	return c.Save()
}

// Add notes one run's candidate, peak rate, whether it saturated the
// harness and whether the candidate was at a full core.
func (c *Capacity) Add(candidate string, peak float64, saturated, overloaded bool) {
	c.Runs = append(c.Runs, CapacityRun{At: time.Now().UTC(), Cores: runtime.NumCPU(), Candidate: candidate, Peak: peak,
		Saturated: saturated, Overloaded: overloaded, Rule: SaturationRule})
}

// Save writes the file, the newest runs kept.
func (c *Capacity) Save() error {
	c.Runs = c.Runs[max(0, len(c.Runs)-maxCapacityRuns):]
	b, err := json.MarshalIndent(c, "", "  ")
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(c.Path), 0o755); err == nil {
			err = os.WriteFile(c.Path, b, 0o644)
		}
	}
	if err != nil {
		return fmt.Errorf("record harness capacity in %s: %w", c.Path, err)
	}
	return nil
}

// Held is the highest peak rate a run with one of the candidates held on
// a machine of this size, below the lowest that saturated it, and
// Saturated that lowest (0: none yet). With no candidates, or none of
// theirs recorded, every run counts.
func (c *Capacity) Held(candidates ...string) (held, saturated float64) {
	return c.bound(func(r CapacityRun) bool { return r.Saturated }, candidates)
}

// KeptUp is like Held, but a run also fails when its candidate was at a
// full core: up to kept a comparison tests the trace, from over on the
// candidates' throughput on a shared machine.
func (c *Capacity) KeptUp(candidates ...string) (kept, over float64) {
	return c.bound(func(r CapacityRun) bool { return r.Saturated || r.Overloaded }, candidates)
}

// bound is the highest peak rate of a run that did not fail, below the
// lowest of one that did, and that lowest.
func (c *Capacity) bound(failed func(CapacityRun) bool, candidates []string) (ok, lowest float64) {
	runs := slices.DeleteFunc(slices.Clone(c.Runs), func(r CapacityRun) bool { return r.Rule != SaturationRule || r.Cores != runtime.NumCPU() })
	if mine := slices.DeleteFunc(slices.Clone(runs), func(r CapacityRun) bool {
		return !slices.Contains(candidates, r.Candidate)
	}); len(mine) > 0 {
		runs = mine
	}
	for _, r := range runs {
		if failed(r) && (lowest == 0 || r.Peak < lowest) {
			lowest = r.Peak
		}
	}
	for _, r := range runs {
		if !failed(r) && (lowest == 0 || r.Peak < lowest) {
			ok = max(ok, r.Peak)
		}
	}
	return ok, lowest
}

// Advise says, before a run of the candidates, whether the harness on this
// machine holds the plan's peak rate: within what it held before, beyond
// what saturated it or what put a candidate at a full core (then at what
// speed it would stay under what the harness and candidates kept up
// with), or not known. Warn is true in the two middle cases.
func (c *Capacity) Advise(plan *replay.Plan, candidates ...string) (advice string, warn bool) {
	peak := plan.PeakRate()
	held, sat := c.Held(candidates...)
	kept, over := c.KeptUp(candidates...)
	speed := plan.Opts.Speed
	asks := fmt.Sprintf("at %s this trace asks for up to %.0f requests a second", replay.SpeedString(speed), peak)
	under := func(s string) string {
		switch {
		case speed <= 0:
		case kept > 0 && kept < held:
			s += fmt.Sprintf("; it held %.0f a second, and the candidates kept up with %.0f: %s", held, kept, stayUnder(plan, kept))
		case held > 0:
			s += fmt.Sprintf("; it held %.0f a second: %s", held, stayUnder(plan, held))
		}
		return s
	}
	switch {
	case held == 0 && sat == 0:
		return "this machine's harness capacity is not known yet ('hubreplay capacity' measures it)", false
	case sat > 0 && peak >= sat:
		return under(fmt.Sprintf("%s; runs asking for %.0f or more saturated this machine's harness before, so expect a SATURATED report", asks, sat)), true
	case over > 0 && peak >= over:
		return under(fmt.Sprintf("%s; at %.0f a second a candidate could not keep the trace's pace before (at a full core, or its answers holding its requests back): it, not the trace, set the pace, and such figures stray from run to run (the verdict may credit or blame either candidate for chance)", asks, over)), true
	case peak <= held:
		return fmt.Sprintf("%s; this machine's harness has held %.0f a second", asks, held), false
	default:
		s := fmt.Sprintf("%s, more than this machine's harness has been seen to hold (%.0f a second)", asks, held)
		if sat > 0 {
			s += fmt.Sprintf(" and less than what saturated it (%.0f)", sat)
		}
		return s + ": the report will say whether it held", false
	}
}

// stayUnder names the speed at which the plan asks for at most rate.
func stayUnder(plan *replay.Plan, rate float64) string {
	if s := plan.SpeedUnder(rate); s > 0 {
		return fmt.Sprintf("--speed %g stays under that", s)
	}
	return "even --speed 0.1 asks for more: fewer --users, or shards"
}
