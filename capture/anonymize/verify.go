package anonymize

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/hubreplay/hubreplay/trace"
)

// Token shapes: what JupyterHub and the tools around it use for secrets.
var (
	// Tornado signed values: jupyterhub-hub-login, _xsrf, user cookies.
	tornadoRE = regexp.MustCompile(`\d\|\d+:\d+\|\d+:\d+\|`)
	// JSON Web Tokens (OAuth providers, some hub services).
	jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)
	// API tokens and session ids are 32+ hex digits.
	hexRE = regexp.MustCompile(`[0-9a-fA-F]{32,}`)
	// Random base64 runs (cookie secrets, OAuth codes, keys); split at
	// slashes before judging them, so that paths are not mistaken for keys.
	b64RE = regexp.MustCompile(`[A-Za-z0-9+_-]{20,}={0,2}`)
)

// LooksSecret reports whether s holds something shaped like a token or
// cookie value: a tornado-signed value, a JWT, 32+ hex digits, or a long
// high-entropy base64 run with upper case, lower case and digits.
func LooksSecret(s string) bool {
	if len(s) < 20 {
		return false
	}
	if tornadoRE.MatchString(s) || jwtRE.MatchString(s) || hexRE.MatchString(s) {
		return true
	}
	for _, run := range b64RE.FindAllString(s, -1) {
		if randomLooking(run) {
			return true
		}
	}
	return false
}

func randomLooking(s string) bool {
	var upper, lower, digit bool
	var counts [256]int
	for i := 0; i < len(s); i++ {
		c := s[i]
		counts[c]++
		upper = upper || c >= 'A' && c <= 'Z'
		lower = lower || c >= 'a' && c <= 'z'
		digit = digit || c >= '0' && c <= '9'
	}
	if !upper || !lower || !digit {
		return false
	}
	h := 0.0
	for _, n := range counts {
		if n > 0 {
			p := float64(n) / float64(len(s))
			h -= p * math.Log2(p)
		}
	}
	// Random strings come close to the most a string of their length can
	// have (log2 of the length); words and identifiers repeat letters.
	return h >= 0.85*math.Log2(float64(len(s)))
}

// Finding is one place a secret (or something shaped like one) was found.
type Finding struct {
	Record int64 // 1-based record number; the header is record 1
	Type   trace.Type
	Field  string // where in the record, e.g. req.headers[2][1]
	What   string // "listed secret 3" or "token-shaped value"
	Sample string // the surroundings, with the secret itself masked
}

func (f Finding) String() string {
	return fmt.Sprintf("record %d (%s) %s: %s: %s", f.Record, f.Type, f.Field, f.What, f.Sample)
}

// ReadSecrets reads one secret per line; blank lines and lines starting
// with # are skipped.
func ReadSecrets(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read secrets %s: %w", path, err)
	}
	return out, nil
}

// needle is one secret, or a part of one, in the forms it may take in a
// trace. Forms are matched case-insensitively (JupyterHub lower-cases user
// names), but for base64, whose case is its content.
type needle struct {
	n     int
	part  string // the part of secret n, or "" for the whole
	forms []string
	b64   []string
}

// minPart is the shortest part of a listed name that is looked for alone:
// a surname that survives when the given name did not.
const minPart = 4

func needles(secrets []string) []needle {
	var out []needle
	for i, s := range secrets {
		whole := needle{n: i + 1, forms: textForms(s)}
		for _, v := range []string{s, strings.ToLower(s)} {
			// Base64 at each of three alignments, without the edge characters
			// that depend on the neighbouring bytes (Basic auth, encoded JSON).
			for shift := range 3 {
				enc := base64.StdEncoding.EncodeToString(append(make([]byte, shift), v...))
				enc = strings.TrimRight(enc, "=")
				lo, hi := (shift*4+2)/3+1, len(enc)-1
				if hi-lo >= 6 {
					whole.b64 = append(whole.b64, enc[lo:hi])
				}
			}
		}
		out = append(out, whole)
		if isAddress(s) {
			continue // its octets and port are numbers, not parts of a name: the whole is looked for
		}
		seen := map[string]bool{strings.ToLower(s): true}
		for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '@' || r == ' ' }) {
			l := strings.ToLower(p)
			// A part that is one of the words a trace keeps by design (an
			// extension, a Jupyter API word) is no evidence of a leak.
			if len([]rune(p)) < minPart || seen[l] || extensions[l] || defaultWords.has(l) {
				continue
			}
			seen[strings.ToLower(p)] = true
			out = append(out, needle{n: i + 1, part: p, forms: textForms(p)})
		}
	}
	return out
}

var defaultWords = newMatcher(DefaultRules().KeepWords)

// isAddress tells whether a listed secret is an IP address, with or
// without a port.
func isAddress(s string) bool {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// textForms are the lower-cased ways s is written in URLs, cookie names
// and host names.
func textForms(s string) []string {
	l := strings.ToLower(s)
	forms := []string{l}
	for _, f := range []string{url.QueryEscape(l), url.PathEscape(l), strings.ReplaceAll(url.PathEscape(l), "%", "_")} {
		if !slices.Contains(forms, strings.ToLower(f)) {
			forms = append(forms, strings.ToLower(f))
		}
	}
	return forms
}

// Verifier scans records for listed secrets and token-shaped values.
type Verifier struct {
	needles  []needle
	Findings []Finding
	// Max bounds the findings kept (negative: no bound); Count counts them all.
	Max   int
	Count int64
	rec   int64
}

// NewVerifier looks for the given secrets and for token shapes.
func NewVerifier(secrets []string) *Verifier {
	return &Verifier{needles: needles(secrets), Max: 1000}
}

// Records returns how many records were checked.
func (v *Verifier) Records() int64 { return v.rec }

// Verify scans a whole trace into v.
func (v *Verifier) Verify(ctx context.Context, r *trace.Reader, progress func(int64)) error {
	return r.Each(ctx, progress, func(rec trace.Record) error {
		v.Check(rec)
		return nil
	})
}

// Verify scans a whole trace.
func Verify(ctx context.Context, r *trace.Reader, secrets []string, progress func(int64)) (*Verifier, error) {
	v := NewVerifier(secrets)
	return v, v.Verify(ctx, r, progress)
}

// Check scans one record, as its JSON line, with payloads and bodies also
// scanned decoded.
func (v *Verifier) Check(rec trace.Record) {
	v.rec++
	line, err := trace.AppendJSON(nil, rec)
	var doc any
	if err == nil {
		err = json.Unmarshal(line, &doc)
	}
	if err != nil {
		// A record verify cannot read is not a record it has cleared.
		v.add(Finding{Record: v.rec, Type: rec.Type(), Field: "(record)", What: "could not be checked", Sample: fmt.Sprintf("%q", err.Error())})
		return
	}
	v.walk(rec.Type(), "", doc)
}

func (v *Verifier) walk(typ trace.Type, path string, x any) {
	switch x := x.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if s, ok := e.(string); ok && (k == "payload" || k == "body") {
				if b, err := base64.StdEncoding.DecodeString(s); err == nil {
					v.scan(typ, p+" (decoded)", string(b))
					continue
				}
			}
			v.walk(typ, p, e)
		}
	case []any:
		for i, e := range x {
			v.walk(typ, fmt.Sprintf("%s[%d]", path, i), e)
		}
	case string:
		v.scan(typ, path, x)
	}
}

func (v *Verifier) scan(typ trace.Type, field, s string) {
	lower := strings.ToLower(s)
	if len(lower) != len(s) {
		// Case folding changed byte lengths: positions are lost, the
		// finding is not.
		s = lower
	}
	whole := map[int]bool{} // a secret found whole needs no finding for its parts
	for _, n := range v.needles {
		if n.part != "" && whole[n.n] {
			continue
		}
		i, size := -1, 0
		for _, f := range n.forms {
			if i = strings.Index(lower, f); i >= 0 {
				size = len(f)
				break
			}
		}
		for _, f := range n.b64 {
			if i < 0 {
				if i = strings.Index(s, f); i >= 0 {
					size = len(f)
				}
			}
		}
		if i < 0 {
			continue
		}
		whole[n.n] = n.part == ""
		what := fmt.Sprintf("listed secret %d", n.n)
		if n.part != "" {
			what = fmt.Sprintf("part of listed secret %d (%d characters)", n.n, len(n.part))
		}
		v.add(Finding{Record: v.rec, Type: typ, Field: field, What: what, Sample: mask(s, i, size)})
	}
	if LooksSecret(s) {
		i, n := shapeAt(s)
		v.add(Finding{Record: v.rec, Type: typ, Field: field, What: "token-shaped value", Sample: mask(s, i, n)})
	}
}

func shapeAt(s string) (int, int) {
	for _, re := range []*regexp.Regexp{tornadoRE, jwtRE, hexRE} {
		if loc := re.FindStringIndex(s); loc != nil {
			return loc[0], loc[1] - loc[0]
		}
	}
	for _, loc := range b64RE.FindAllStringIndex(s, -1) {
		if randomLooking(s[loc[0]:loc[1]]) {
			return loc[0], loc[1] - loc[0]
		}
	}
	return 0, 0
}

// mask shows where a secret is without printing it: its first two
// characters, then stars, with a little context either side.
func mask(s string, i, n int) string {
	lo, hi := max(0, i-16), min(len(s), i+n+16)
	keep := min(2, n)
	return fmt.Sprintf("%q", s[lo:i]+s[i:i+keep]+strings.Repeat("*", min(n-keep, 12))+s[i+n:hi])
}

func (v *Verifier) add(f Finding) {
	v.Count++
	if v.Max < 0 || len(v.Findings) < v.Max {
		v.Findings = append(v.Findings, f)
	}
}
