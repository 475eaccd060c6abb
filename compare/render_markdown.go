package compare

import (
	"fmt"
	"io"
	"strings"

	"github.com/hubreplay/hubreplay/replay"
)

// WriteMarkdown writes the report for a pull request comment or
// $GITHUB_STEP_SUMMARY: the verdict, the summary table, the endpoint
// classes that answered differently.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	icon := "✅"
	switch {
	case r.Verdict.Regression:
		icon = "❌"
	case r.Verdict.Unanswered:
		icon = "⚠️"
	}
	fmt.Fprintf(&b, "## %s hubreplay compare: %s vs %s\n\n", icon, mdEscape(r.A().Spec), mdEscape(r.B().Spec))
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		b.WriteString(title + "\n\n")
		for _, it := range items {
			fmt.Fprintf(&b, "- %s\n", mdEscape(it))
		}
		b.WriteString("\n")
	}
	v := r.Verdict
	if v.Saturated {
		fmt.Fprintf(&b, "**Saturated** — %s\n\n", mdEscape(strings.TrimPrefix(strings.TrimSuffix(r.saturation(), " —"), "SATURATED: ")))
	}
	switch {
	case v.Regression:
		list("**Regression** — B is worse than A:", v.Reasons)
		list("B did better on:", v.Better)
	case v.Unanswered:
		list("**No answer** — checks in force could not be measured, so B cannot be judged against A:", v.Unmeasured)
	case len(v.Better) > 0:
		list("**Better** — B is better than A:", v.Better)
	default:
		fmt.Fprintf(&b, "**Same** — B is neither worse nor better than A within %s.\n\n", r.within())
	}
	if !v.Regression && !v.Unanswered {
		fmt.Fprintf(&b, "The same on: %s.\n\n", r.sameOn())
	}
	if p := r.pace(); p != "" {
		fmt.Fprintf(&b, "**Caution** — %s.\n\n", mdEscape(p))
	}
	var other []string
	for _, c := range v.Checks {
		if c.Class == NotApplicable || c.Class == Off || c.Class == NotValid || c.Class == Unmeasured && v.Regression {
			other = append(other, fmt.Sprintf("%s: %s", c.Name, c.Class))
		}
	}
	if len(other) > 0 {
		fmt.Fprintf(&b, "Not judged: %s.\n\n", strings.Join(other, "; "))
	}
	fmt.Fprintf(&b, "Trace `%s` at %s, %d× users, seed %d.\n", r.Trace, replay.SpeedString(r.Speed), r.Users, r.Seed)
	b.WriteString("\n|   |")
	for _, f := range r.Runs {
		fmt.Fprintf(&b, " %s |", mdEscape(runTitle(f)))
	}
	b.WriteString("\n|---|")
	for range r.Runs {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, rw := range r.rows() {
		if rw.Section != "" {
			fmt.Fprintf(&b, "| **%s** |%s\n", rw.Section, strings.Repeat(" |", len(r.Runs)))
		}
		fmt.Fprintf(&b, "| %s |", rw.Label)
		for i, c := range rw.Cells {
			if i == 1 && rw.Worse {
				c = "❌ **" + c + "**"
			} else if i == 1 && rw.Better {
				c = "✅ " + c
			}
			fmt.Fprintf(&b, " %s |", mdEscape(c))
		}
		b.WriteString("\n")
	}
	if len(r.Diff) > 0 {
		b.WriteString("\n### Where A and B answered differently\n\n| endpoint | requests | differ | noise (A vs A') | most often |\n|---|---|---|---|---|\n")
		for _, d := range r.Diff[:min(15, len(r.Diff))] {
			noise := "–"
			if d.Noise >= 0 {
				noise = fmt.Sprint(d.Noise)
			}
			fmt.Fprintf(&b, "| `%s` | %d | %d | %s | %s |\n", d.Class, d.Requests, d.Differ, noise, mdEscape(strings.Join(d.Top, "; ")))
		}
		if len(r.Diff) > 15 {
			fmt.Fprintf(&b, "\n%d more endpoint classes in the JSON report.\n", len(r.Diff)-15)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n### Worth a look\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", mdEscape(n))
		}
	}
	writeFirstLogs(&b, r)
	fmt.Fprintf(&b, "\n<sub>%s · results: %s</sub>\n", r.Tool, resultsList(r))
	_, err := io.WriteString(w, b.String())
	return err
}

func resultsList(r *Report) string {
	var s []string
	for _, f := range r.Runs {
		s = append(s, "`"+f.Results+"`")
	}
	return strings.Join(s, ", ")
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

// writeFirstLogs shows, for A and B, the first log line of each kind that
// matters (with the stack trace after it): the counts say how often, these
// say what.
func writeFirstLogs(b *strings.Builder, r *Report) {
	header := false
	for _, f := range []*Figures{r.A(), r.B()} {
		for _, k := range logKindOrder {
			lines := f.FirstLogs[k]
			if len(lines) == 0 {
				continue
			}
			if !header {
				b.WriteString("\n### The candidates' log: the first line of each kind\n")
				header = true
			}
			text := strings.ReplaceAll(strings.Join(lines, "\n"), "```", "'''")
			fmt.Fprintf(b, "\n%s, the first of its %d %s lines:\n\n```\n%s\n```\n", runTitle(f), f.Logs[k], logKind(k), text)
		}
	}
}
