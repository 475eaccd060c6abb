package compare

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hubreplay/hubreplay/internal/version"
	"github.com/hubreplay/hubreplay/replay"
)

// Report is a comparison: every figure of every run, the verdict, the
// endpoint classes that answered differently.
type Report struct {
	Tool    string    `json:"tool"`
	Created time.Time `json:"created"`
	Trace   string    `json:"trace"`
	Speed   float64   `json:"speed"` // 0: as fast as possible
	Users   int       `json:"users"`
	Seed    uint64    `json:"seed"`
	// Runs are A, B, then A's noise runs.
	Runs       []*Figures  `json:"runs"`
	Thresholds Thresholds  `json:"thresholds"`
	Verdict    Verdict     `json:"verdict"`
	Diff       []ClassDiff `json:"diff"`
	// Notes are differences worth a look that the verdict does not judge
	// (error lines in the proxy's log, route API trouble).
	Notes []string `json:"notes,omitempty"`
}

// A and B are the report's two candidates.
func (r *Report) A() *Figures { return r.Runs[0] }
func (r *Report) B() *Figures { return r.Runs[1] }

// Noise are A's extra runs.
func (r *Report) Noise() []*Figures { return r.Runs[2:] }

// Analyze reads the results files of a comparison — A's, B's, then any
// noise runs of A — and judges B against A. Files written by compare say
// their role; plain replay results are taken in that order.
func Analyze(ctx context.Context, th Thresholds, files ...string) (*Report, error) {
	if len(files) < 2 {
		return nil, fmt.Errorf("a comparison needs two results files (A and B), got %d", len(files))
	}
	var runs []*run
	for _, f := range files {
		r, err := readRun(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		runs = append(runs, r)
	}
	// Put them in role order when the files say their roles.
	// The first file saying A goes first, the first saying B second; the
	// rest keep their order (a second A is a noise run).
	key := make([]int, len(runs))
	taken := map[string]bool{}
	for i, r := range runs {
		key[i] = i
		if r.cand == nil || taken[r.cand.Role] {
			continue
		}
		switch r.cand.Role {
		case RoleA:
			key[i] = -2
		case RoleB:
			key[i] = -1
		}
		taken[r.cand.Role] = true
	}
	idx := make([]int, len(runs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(i, j int) int { return cmp.Compare(key[i], key[j]) })
	rep := &Report{Tool: version.Tool(), Created: time.Now().UTC(), Thresholds: th}
	// A file keeps the role it says, unless an earlier one took it; plain
	// replay results get theirs by position.
	roles := []string{RoleA, RoleB}
	used := map[string]bool{}
	for n, i := range idx {
		role := RoleNoise
		if n < 2 {
			role = roles[n]
		} else if n > 2 {
			role = fmt.Sprintf("%s%d", RoleNoise, n-1)
		}
		if c := runs[i].cand; c != nil && c.Role != "" && !used[c.Role] && n > 0 {
			role = c.Role
		}
		used[role] = true
		rep.Runs = append(rep.Runs, runs[i].figures(role))
	}
	first := runs[idx[0]].res.Runs[0]
	rep.Trace, rep.Speed, rep.Users, rep.Seed = first.Trace, first.Speed, first.Users, first.Seed
	for _, i := range idx[1:] {
		o := runs[i].res.Runs[0]
		if o.Trace != first.Trace || o.Requests != first.Requests || o.Speed != first.Speed || o.Users != first.Users || o.Seed != first.Seed {
			return nil, fmt.Errorf("report: %s and %s are not runs of the same replay (%s, %d requests at %s, %d× users, seed %d against %s, %d requests at %s, %d× users, seed %d)",
				files[idx[0]], files[i], first.Trace, first.Requests, replay.SpeedString(first.Speed), first.Users, first.Seed,
				o.Trace, o.Requests, replay.SpeedString(o.Speed), o.Users, o.Seed)
		}
	}
	rep.Verdict = judge(rep.A(), rep.B(), rep.Noise(), th)
	var noise []*replay.Request
	if len(idx) > 2 {
		noise = runs[idx[2]].res.Requests
	}
	rep.Diff = diffClasses(runs[idx[0]].res.Requests, runs[idx[1]].res.Requests, noise)
	rep.Notes = notes(rep.A(), rep.B())
	return rep, nil
}

// logKindOrder is the order log kinds are shown in, most telling first.
var logKindOrder = []string{"uncaught", "epipe", "econnreset", "heap_limit", "socket_hang_up", "error"}

// notes point at differences the verdict leaves to people.
func notes(a, b *Figures) []string {
	var out []string
	for _, k := range logKindOrder {
		if b.Logs[k] > a.Logs[k] {
			out = append(out, fmt.Sprintf("B logged %d %s lines (A: %d)", b.Logs[k], logKind(k), a.Logs[k]))
		}
	}
	if la, lb := a.Errors[replay.ErrLateForRoute], b.Errors[replay.ErrLateForRoute]; la+lb > 0 {
		out = append(out, fmt.Sprintf("the replayer sent %d of A's and %d of B's requests after their routes' recorded end (the hub had deleted them): the harness ran late, so they are left out of the failures (try a lower --speed)", la, lb))
	}
	if b.API.Failed > a.API.Failed {
		out = append(out, fmt.Sprintf("%d of B's route API calls failed (A: %d)", b.API.Failed, a.API.Failed))
	}
	if a.Proxy != nil && b.Proxy != nil && b.Proxy.CPUSeconds > 1.5*a.Proxy.CPUSeconds && b.Proxy.CPUSeconds-a.Proxy.CPUSeconds > 1 {
		out = append(out, fmt.Sprintf("B used %.1f CPU seconds against A's %.1f", b.Proxy.CPUSeconds, a.Proxy.CPUSeconds))
	}
	return out
}

func logKind(k string) string {
	return map[string]string{"uncaught": "uncaught exception", "epipe": "EPIPE", "econnreset": "ECONNRESET", "heap_limit": "heap limit",
		"socket_hang_up": "socket hang up", "error": "error"}[k]
}
