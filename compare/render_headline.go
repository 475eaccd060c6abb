package compare

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/hubreplay/hubreplay/replay"
)

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Headline is the verdict in one line, both ways: what B did worse, what
// it did better, or that it could not be judged.
func (r *Report) Headline() string {
	s := r.headline()
	if r.Verdict.Saturated {
		s = r.saturation() + " " + s
	}
	if p := r.pace(); p != "" {
		s += " — caution: " + p
	}
	return s
}

// pace warns when B was at a full core: it, not the trace, set the pace,
// and such figures stray from run to run (4.6.2 against itself at 40x on
// the 300-student peak came out "better" on failed requests, 0% against
// 2.5%, by chance). A run of A's that could not keep the trace's pace
// saturates the verdict instead.
func (r *Report) pace() string {
	var full []string
	for _, f := range r.Runs {
		if f.Role == RoleB && f.Proxy.Overloaded() {
			full = append(full, fmt.Sprintf("%s (%d of %d samples)", f.Role, f.Proxy.CPUBusy, f.Proxy.Samples))
		}
	}
	if len(full) == 0 {
		return ""
	}
	return fmt.Sprintf("the candidate was at a full core in %s: it, not the trace, set the pace there, and such figures stray from run to run; a lower --speed than %s tests the trace",
		strings.Join(full, ", "), replay.SpeedString(r.Speed))
}

// saturation says what the bottleneck was (the harness, A's own pace),
// what is left out, and what to do.
func (r *Report) saturation() string {
	v := r.Verdict
	todo := "replay at a lower --speed than " + replay.SpeedString(r.Speed)
	if r.Speed <= 0 {
		todo = "replay at a --speed 'hubreplay capacity' finds the harness holds"
	}
	harness := false
	for _, f := range r.Runs {
		harness = harness || (f.Harness != nil && f.Harness.Saturated)
	}
	what := "the harness, not the candidate, was the bottleneck"
	switch {
	case v.Paced && harness:
		what = "the harness was the bottleneck, and A, the baseline, could not keep the trace's pace"
	case v.Paced:
		what = "A, the baseline, could not keep the trace's pace: its own answers, not the trace, set the load"
	}
	return fmt.Sprintf("SATURATED: %s (%s); left out of the verdict: %s; %s, with fewer --users, or in shards —",
		what, strings.Join(v.Why, "; "), strings.Join(v.LeftOut, ", "), todo)
}

func (r *Report) headline() string {
	a, b, v := r.A(), r.B(), r.Verdict
	switch {
	case v.Regression:
		s := fmt.Sprintf("REGRESSION: %s is worse than %s — %s", b.Spec, a.Spec, strings.Join(v.Reasons, "; "))
		if len(v.Better) > 0 {
			s += "; better on " + strings.Join(v.Better, "; ")
		}
		return s
	case v.Unanswered:
		return fmt.Sprintf("NO ANSWER: %s could not be judged against %s — %s", b.Spec, a.Spec, strings.Join(v.Unmeasured, "; "))
	case len(v.Better) > 0:
		return fmt.Sprintf("BETTER: %s is better than %s — %s; the same on %s", b.Spec, a.Spec, strings.Join(v.Better, "; "), r.sameOn())
	}
	return fmt.Sprintf("SAME: %s is neither worse nor better than %s within %s on %s (%d requests, %d WebSocket sessions at %s)",
		b.Spec, a.Spec, r.within(), r.sameOn(), b.Requests, b.Sessions, replay.SpeedString(r.Speed))
}

// within says what "the same" allows for.
func (r *Report) within() string {
	if len(r.Noise()) > 0 {
		return "the thresholds and the noise between A's runs"
	}
	return "the thresholds (no noise run measured how far A strays from itself)"
}

// sameOn names the checks judged the same.
func (r *Report) sameOn() string {
	var names []string
	for _, c := range r.Verdict.Of(Same) {
		names = append(names, c.Name)
	}
	if len(names) == 0 {
		return "nothing else"
	}
	return strings.Join(names, ", ")
}
