package replay

import "time"

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
