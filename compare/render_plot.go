package compare

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// line is one series of a plot.
type line struct {
	Name  string
	Color string
	Dash  bool
	X, Y  []float64
}

// mark is a vertical marker (a restart).
type mark struct {
	X     float64
	Label string
	Color string
}

// Colours of the runs in plots: A blue, B orange, noise runs grey.
var runColors = []string{"#1f77b4", "#ff7f0e", "#7f7f7f"}

func runColor(i int) string { return runColors[min(i, len(runColors)-1)] }

// svgPlot draws lines over trace time as an inline SVG: no script, no
// network, so the report opens anywhere.
// Every plot of a report spans the same xMax, so that they line up.
func svgPlot(title, unit string, xMax float64, lines []line, marks []mark) template.HTML {
	const w, h, left, right, top, bottom = 920.0, 260.0, 64.0, 16.0, 30.0, 40.0
	maxY := 0.0
	for _, l := range lines {
		for _, y := range l.Y {
			maxY = math.Max(maxY, y)
		}
	}
	xStep, yStep := niceStep(xMax/6), niceStep(maxY*1.05/4)
	maxX := math.Ceil(xMax/xStep) * xStep
	maxY = math.Max(yStep, math.Ceil(maxY*1.05/yStep)*yStep)
	px := func(x float64) float64 { return left + x/maxX*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - y/maxY*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`, w, h, w, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="18" class="title">%s</text>`, left, template.HTMLEscapeString(title))
	for y := 0.0; y <= maxY+yStep/2; y += yStep {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/>`, left, w-right, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="ytick">%s</text>`, left-6, py(y)+4, tick(y))
	}
	for x := 0.0; x <= maxX+xStep/2; x += xStep {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="xtick">%s</text>`, px(x), h-bottom+16, tick(x))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="xlabel">trace time (minutes)</text>`, (left+w-right)/2, h-6)
	fmt.Fprintf(&b, `<text x="12" y="%.1f" class="ylabel" transform="rotate(-90 12 %.1f)">%s</text>`, (top+h-bottom)/2, (top+h-bottom)/2, template.HTMLEscapeString(unit))
	for _, m := range marks {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="4 3"/>`, px(m.X), px(m.X), top, h-bottom, m.Color)
		// Labels at the foot of the line, clear of the legend at the top.
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="mark" fill="%s">%s</text>`, px(m.X)+3, h-bottom-5, m.Color, template.HTMLEscapeString(m.Label))
	}
	for _, l := range lines {
		if len(l.X) == 0 {
			continue
		}
		var pts strings.Builder
		for i := range l.X {
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(l.X[i]), py(l.Y[i]))
		}
		dash := ""
		if l.Dash {
			dash = ` stroke-dasharray="6 3"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2.5"%s points="%s"/>`, l.Color, dash, strings.TrimSpace(pts.String()))
	}
	x := left + 8
	for _, l := range lines {
		dash := ""
		if l.Dash {
			dash = ` stroke-dasharray="6 3"`
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="3"%s/><text x="%.1f" y="%.1f" class="legend">%s</text>`,
			x+200, x+222, top+4, top+4, l.Color, dash, x+226, top+8, template.HTMLEscapeString(l.Name))
		x += 40 + 7*float64(len(l.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceStep rounds up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func tick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2g", v)
}
