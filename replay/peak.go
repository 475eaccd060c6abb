package replay

import (
	"slices"
	"time"

	"github.com/hubreplay/hubreplay/trace"
)

// PeakRate is the most requests the plan sends in one second of wall time
// at its speed: what the harness must keep up with at the busiest moment
// (at "max" speed, the whole plan at once).
func (p *Plan) PeakRate() float64 {
	per := map[int64]int{}
	peak := 0
	for _, c := range p.Conns {
		for _, s := range c.Steps {
			k := int64(0)
			if p.Opts.Speed > 0 {
				k = int64(float64(s.At) / p.Opts.Speed / float64(time.Second))
			}
			per[k]++
			peak = max(peak, per[k])
		}
	}
	return float64(peak)
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
