package replay

import (
	"slices"
	"time"

	"github.com/hubreplay/hubreplay/trace"
)

// PeakRate is the most requests the plan sends in one second of wall time
// at its speed: what the harness must keep up with at the busiest moment
// (at "max" speed, the whole plan at once).
func (p *Plan) PeakRate() float64 { return p.PeakRateAt(p.Opts.Speed) }

// PeakRateAt is the plan's peak rate were it replayed at speed: not
// proportional to the speed, as a faster replay also folds more of the
// trace's bursts into one second (the 300-student peak: 188 a second per
// unit of speed at 5x, 165 at 10x).
func (p *Plan) PeakRateAt(speed float64) float64 {
	per := map[int64]int{}
	peak := 0
	for _, c := range p.Conns {
		for _, s := range c.Steps {
			k := int64(0)
			if speed > 0 {
				k = int64(float64(s.At) / speed / float64(time.Second))
			}
			per[k]++
			peak = max(peak, per[k])
		}
	}
	return float64(peak)
}

// SpeedUnder is the highest speed, in tenths and up to the plan's own,
// at which the plan's peak rate is at most rate (0: not even 0.1).
func (p *Plan) SpeedUnder(rate float64) float64 {
	lo, hi := 0, int(p.Opts.Speed*10) // tenths: lo holds, above hi is not tried
	if p.PeakRateAt(float64(hi)/10) <= rate {
		return float64(hi) / 10
	}
	for lo < hi-1 {
		mid := (lo + hi) / 2
		if p.PeakRateAt(float64(mid)/10) <= rate {
			lo = mid
		} else {
			hi = mid
		}
	}
	return float64(lo) / 10
}

// Busiest is the stretch of d of trace time in which the plan sends the
// most requests (the whole plan when it is shorter), in trace time (as
// Options.Window takes it).
func (p *Plan) Busiest(d time.Duration) trace.Window {
	var at []time.Duration
	for _, c := range p.Conns {
		for _, s := range c.Steps {
			at = append(at, s.At)
		}
	}
	slices.Sort(at)
	// The stretch that starts with a request and holds the most.
	best, from := 0, time.Duration(0)
	for i, j := 0, 0; i < len(at); i++ {
		for j < len(at) && at[j] < at[i]+d {
			j++
		}
		if j-i > best {
			best, from = j-i, at[i]
		}
	}
	from = min(from, max(0, p.Length-d))
	base := p.Opts.Window.From
	return trace.Window{From: base + from, To: base + min(p.Length, from+d)}
}
