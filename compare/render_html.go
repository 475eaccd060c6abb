package compare

import (
	_ "embed"
	"html/template"
	"io"

	"github.com/hubreplay/hubreplay/replay"
)

//go:embed render_report.html.tmpl
var htmlTemplate string

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{"inc": func(n int) int { return n + 1 }}).Parse(htmlTemplate))

// WriteHTML writes the report as one self-contained HTML file: the
// verdict, plots over trace time (memory, sockets by state, requests and
// failures, latency, restarts marked), the summary table, and where A and
// B answered differently. It needs no network to open.
func (r *Report) WriteHTML(w io.Writer) error {
	var titles, colors []string
	for i, f := range r.Runs {
		titles = append(titles, runTitle(f))
		colors = append(colors, runColor(i))
	}
	return reportTmpl.Execute(w, map[string]any{
		"R":      r,
		"Titles": titles,
		"Rows":   r.rows(),
		"Speed":  replay.SpeedString(r.Speed),
		"Plots":  r.plots(),
		"Colors": colors,
		"Pace":   r.pace(),
	})
}

// plots draws each figure over trace time for every run.
func (r *Report) plots() []template.HTML {
	xMax := 0.0
	for _, f := range r.Runs {
		s := &f.Series
		for _, xs := range [][]float64{s.T, s.ST, s.Exits} {
			for _, x := range xs {
				xMax = max(xMax, x)
			}
		}
	}
	// The trace's end: after it, the candidates stand idle.
	marks := []mark{{X: r.A().Length.Minutes(), Label: "replay ends", Color: "#999999"}}
	for _, f := range r.Runs {
		for _, x := range f.Series.Exits {
			marks = append(marks, mark{X: x, Label: f.Role + " exit", Color: "#d62728"})
		}
	}
	each := func(get func(s *Series) ([]float64, []float64), suffix string, dash bool) []line {
		var ls []line
		for i, f := range r.Runs {
			x, y := get(&f.Series)
			ls = append(ls, line{Name: f.Role + suffix, Color: runColor(i), Dash: dash, X: x, Y: y})
		}
		return ls
	}
	samples := func(y func(s *Series) []float64) func(s *Series) ([]float64, []float64) {
		return func(s *Series) ([]float64, []float64) { return s.ST, y(s) }
	}
	buckets := func(y func(s *Series) []float64) func(s *Series) ([]float64, []float64) {
		return func(s *Series) ([]float64, []float64) { return s.T, y(s) }
	}
	return []template.HTML{
		svgPlot("Proxy resident memory", "MiB", xMax, each(samples(func(s *Series) []float64 { return s.RSS }), "", false), marks),
		svgPlot("Proxy TCP sockets: ESTABLISHED (solid), CLOSE_WAIT (dashed)", "sockets", xMax,
			append(each(samples(func(s *Series) []float64 { return s.Estab }), " established", false),
				each(samples(func(s *Series) []float64 { return s.CloseWait }), " close_wait", true)...), marks),
		svgPlot("Proxy open file descriptors", "fds", xMax, each(samples(func(s *Series) []float64 { return s.FDs }), "", false), marks),
		svgPlot("Requests per second (solid) and failed requests per second (dashed)", "per second of trace time", xMax,
			append(each(buckets(func(s *Series) []float64 { return s.ReqRate }), " req/s", false),
				each(buckets(func(s *Series) []float64 { return s.ErrRate }), " failed/s", true)...), marks),
		svgPlot("Latency: p50 (solid), p99 (dashed)", "ms", xMax,
			append(each(buckets(func(s *Series) []float64 { return s.P50 }), " p50", false),
				each(buckets(func(s *Series) []float64 { return s.P99 }), " p99", true)...), marks),
	}
}
