// Package compare runs two candidate proxies on the same trace, one after
// the other on the same machine, each behind fresh fixtures and a fresh hub
// stub, and judges B against A: latency, errors, WebSocket delivery, what a
// leak leaves behind (memory, file descriptors, sockets by state),
// restarts and the 503 window after each. Each run's results file holds
// everything the report needs, so a report can be rendered again from the
// files (Analyze).
//
// Its files come in three groups, by name:
//
//   - run*.go: running the candidates (Run), the records a run adds to
//     its results file, the capacity file and the capacity probe;
//   - judge_*.go: reading runs back into Figures, the harness's own
//     figures and the saturation rule, the verdict and its checks (one
//     table, rules, in judge_rules.go), the endpoint classes that differ;
//   - render_*.go: the headline, the report's tables, plots, HTML,
//     Markdown and JSON.
package compare
