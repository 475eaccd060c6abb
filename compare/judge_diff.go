package compare

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hubreplay/hubreplay/replay"
)

// ClassDiff is where two runs answered one endpoint class differently.
type ClassDiff struct {
	Class    string `json:"class"`    // method and path pattern, e.g. "GET /user/{user}/api/kernels/{id}"
	Requests int    `json:"requests"` // replayed in both A and B
	// Differ counts requests whose outcome (status or error, and size)
	// differs between A and B; Noise between A and A' (−1: no noise run).
	Differ int `json:"differ"`
	Noise  int `json:"noise"`
	// Top says what changed most often, e.g. "200 → 503 (proxy_5xx) ×12".
	Top []string `json:"top"`
}

var idSegment = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{12,}|\d+|u-[0-9a-z]+)$`)

// endpointClass is a request's method and path with its variable parts
// named: the user, ids, and everything past the fifth segment.
func endpointClass(method, target string) string {
	path, _, _ := strings.Cut(target, "?")
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, s := range segs {
		switch {
		case i > 0 && segs[i-1] == "user" && i == 1:
			segs[i] = "{user}"
		case idSegment.MatchString(s):
			segs[i] = "{id}"
		}
	}
	if len(segs) > 5 {
		segs = append(segs[:5], "…")
	}
	return method + " /" + strings.Join(segs, "/")
}

// outcome is how a request ended, for comparing runs.
func outcome(q *replay.Request) string {
	switch {
	case q.Error != "" && q.Error != replay.ErrBackend5xx && q.Error != replay.ErrMismatch:
		if q.Status != 0 {
			return fmt.Sprintf("%d (%s)", q.Status, q.Error)
		}
		return q.Error
	case q.Status == 0:
		return "no answer"
	default:
		return strconv.Itoa(q.Status) + " " + strconv.FormatInt(q.Bytes, 10) + "B"
	}
}

// comparable says whether a request's outcome is the candidate's to answer
// for: not one the harness sent out of order (late_for_route) or stopped
// (cancelled), which would list the harness's doing as a difference.
func comparable(q *replay.Request) bool {
	return q.Error != replay.ErrLateForRoute && q.Error != replay.ErrCancelled
}

type reqKey struct {
	record int64
	clone  int
}

func byRecord(rs []*replay.Request) map[reqKey]*replay.Request {
	m := make(map[reqKey]*replay.Request, len(rs))
	for _, q := range rs {
		m[reqKey{q.Record, q.Clone}] = q
	}
	return m
}

// diffClasses compares A's and B's answers request by request, by endpoint
// class, and, given a noise run, A's and A”s the same way; it keeps the
// classes where A and B differ more than A and A' did.
func diffClasses(a, b, noise []*replay.Request) []ClassDiff {
	am, bm := byRecord(a), byRecord(b)
	var nm map[reqKey]*replay.Request
	if noise != nil {
		nm = byRecord(noise)
	}
	classes := map[string]*ClassDiff{}
	changes := map[string]map[string]int{}
	for k, qa := range am {
		qb, ok := bm[k]
		if !ok || !comparable(qa) || !comparable(qb) {
			continue
		}
		c := endpointClass(qa.Method, qa.Target)
		d := classes[c]
		if d == nil {
			d = &ClassDiff{Class: c, Noise: -1}
			if nm != nil {
				d.Noise = 0
			}
			classes[c], changes[c] = d, map[string]int{}
		}
		d.Requests++
		oa, ob := outcome(qa), outcome(qb)
		if oa != ob {
			d.Differ++
			changes[c][oa+" → "+ob]++
		}
		if qn, ok := nm[k]; ok && comparable(qn) && outcome(qn) != oa {
			d.Noise++
		}
	}
	var out []ClassDiff
	for c, d := range classes {
		if d.Differ <= max(d.Noise, 0) {
			continue
		}
		ch := changes[c]
		keys := sortedKeys(ch)
		slices.SortStableFunc(keys, func(x, y string) int { return cmp.Compare(ch[y], ch[x]) })
		for _, k := range keys[:min(3, len(keys))] {
			d.Top = append(d.Top, fmt.Sprintf("%s ×%d", k, ch[k]))
		}
		out = append(out, *d)
	}
	slices.SortFunc(out, func(x, y ClassDiff) int {
		return cmp.Or(cmp.Compare(y.Differ-max(y.Noise, 0), x.Differ-max(x.Noise, 0)), cmp.Compare(x.Class, y.Class))
	})
	return out
}
