package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hubreplay/hubreplay/capture"
	"github.com/hubreplay/hubreplay/capture/anonymize"
	"github.com/hubreplay/hubreplay/internal/procwatch"
	"github.com/hubreplay/hubreplay/internal/version"
	"github.com/hubreplay/hubreplay/tap/wire"
	"github.com/hubreplay/hubreplay/trace"
)

func newCaptureCmd() *cobra.Command {
	c := &captureCmd{}
	cmd := &cobra.Command{
		Use:   "capture (--pcap FILE | --iface NAME) -o TRACE",
		Short: "Record a JupyterHub proxy's traffic, anonymized, into a trace",
		Long: `capture turns the traffic of a JupyterHub proxy (configurable-http-proxy) into
a trace: TCP streams are reassembled, HTTP/1.1 exchanges and WebSocket frames
are parsed, calls to the proxy's REST API become route events, and every
record is anonymized before it is written.

Sources:
  --pcap FILE    a capture made with tcpdump (pcap or pcapng, gzip'd or not;
                 Ethernet, loopback, raw IP or 'any' (Linux cooked) links), e.g.
                   tcpdump -i any -s 0 -w peak.pcap 'tcp port 8000 or tcp port 8001'
  --iface NAME   a live capture on one interface, or on all of them with
                 --iface any (needs root or CAP_NET_RAW), through a kernel ring
                 of --buffer-size; stop it with Ctrl-C, --max-duration (wall
                 clock) or --max-size. Every loss is counted and shown:
                 kernel drops (the ring overflowed: raise --buffer-size) and
                 gaps (bytes a connection lost)

Flight recorder (--ring 30m): keep only the last 30 minutes, bounded on disk
(segments in TRACE.ring/, about 1.25 times the window), and write them out
as a trace that stands on its own (connections and routes from before the
window carried in, as slice does) when told to: kill -USR1 PID writes
TRACE's name with the time (peak-20261203T141500Z.trace) and goes on
recording; so does the exit of a process --watch names (the proxy crashing
or being OOM-killed; its restart is watched too); Ctrl-C, --max-duration or
the end of a --pcap writes TRACE and stops. Left running through a lecture, it hands over the peak before a
crash. If a write fails, the segments stay in TRACE.ring/, each a trace.

Anonymization (the default, and the only safe way to keep a trace):
users become pseudonyms (keyed HMAC-SHA256: u-1a2b3c4d), cookies, tokens,
Authorization, _xsrf, client addresses and X-Forwarded-* are removed or
replaced, file names and ids in paths become pseudonyms, bodies keep only
their size, and WebSocket payloads keep their size and Jupyter message
structure (msg_type, channel, msg_id pseudonyms) but no code or output.
User names are found wherever JupyterHub puts them: in paths under the base
URL (--base-url, or learned from the routes API), on subdomains
(--subdomain-host, or learned from host routes), in /hub/api/users/NAME,
route data, cookie names, OAuth client ids, kernel message headers, Referer
and Location; each user has one pseudonym everywhere, whatever the case or
escaping. Only values from closed sets (methods, known header names, status
codes, Jupyter's API words, message types and channels, static asset paths)
are kept verbatim; README's threat model lists them field by field.
The key is random for each capture unless --anon-key-file gives one (then
the same user has the same pseudonym in several captures); it is never
written to the trace. --anon-rules FILE (YAML) changes what is kept; see
capture/anonymize/rules.go for the defaults. Check a trace with
'hubreplay verify TRACE --secrets FILE'.

--raw keeps everything as it was on the wire: passwords, tokens, cookies,
code and file contents. Use it only on test systems.`,
		Example: `  hubreplay capture --pcap peak.pcap.gz -o peak.trace
  hubreplay capture --iface any --port 8000 --api-port 8001 --ring 30m -o lecture.trace   # then: kill -USR1 <pid>
  hubreplay capture --iface eth0 --port 8000 --api-port 8001 -o monday.trace --max-duration 2h
  hubreplay capture --pcap peak.pcapng -o peak.trace --anon-key-file /etc/hubreplay/key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&c.pcap, "pcap", "", "read packets from a pcap or pcapng file (gzip'd is fine)")
	f.StringVar(&c.iface, "iface", "", "capture live on this network interface")
	f.StringVarP(&c.out, "output", "o", "", "the trace file to write (required; must not exist unless --force); - writes it to standard output")
	f.BoolVar(&c.base64, "base64", false, "with -o -: one base64 line per frame, for a log stream (what hubreplay tap reads)")
	f.UintSliceVar(&c.ports, "port", []uint{8000}, "the proxy's public port(s)")
	f.UintSliceVar(&c.apiPorts, "api-port", nil, "the proxy's REST API port(s) (usually 8001): route changes become route events")
	f.StringVar(&c.keyFile, "anon-key-file", "", "file holding the pseudonym key (≥16 bytes), to keep pseudonyms stable across captures")
	f.StringVar(&c.rulesFile, "anon-rules", "", "YAML file overriding the anonymization rules")
	f.BoolVar(&c.raw, "raw", false, "DANGEROUS: keep secrets, code and contents (no anonymization)")
	f.DurationVar(&c.maxDuration, "max-duration", 0, "stop after this long, e.g. 90m (live: wall-clock time; --pcap: the packets' time)")
	f.StringVar(&c.bufferSize, "buffer-size", "64Mi", "live: the kernel ring's size (like tcpdump -B); packets arriving while it is full are dropped and counted")
	f.StringVar(&c.maxSize, "max-size", "", "stop when the trace file reaches this size, e.g. 2GB")
	f.BoolVar(&c.force, "force", false, "replace the output file if it exists")
	f.DurationVar(&c.ring, "ring", 0, "flight recorder: keep only this much of the capture (e.g. 30m) and write it out on SIGUSR1 and at the end")
	f.StringVar(&c.watch, "watch", "", "with --ring: also write it out when a process whose command line holds this exits (a crash, an OOM kill), e.g. configurable-http-proxy")
	f.IntVar(&c.workers, "workers", 0, "reassemble and parse the connections on this many goroutines, each TCP connection on one (default 0: one per processor)")
	f.StringVar(&c.note, "note", "", "free text kept in the trace header, e.g. \"Monday lecture peak\"")
	f.StringVar(&c.sourceName, "source-name", "", "what the trace header says the records came from (default \"pcap\" or \"iface:NAME\": never the capture file's name)")
	f.StringVar(&c.baseURL, "base-url", "", "the hub's c.JupyterHub.base_url (z2jh: hub.baseUrl), e.g. /jhub/; learned from the routes API when not given")
	f.StringVar(&c.subdomainHost, "subdomain-host", "", "the hub's c.JupyterHub.subdomain_host, when users are on subdomains; learned from host routes when not given")
	return cmd
}

// captureCmd is capture's flags, and its steps.
type captureCmd struct {
	pcap, iface, out, keyFile, rulesFile, note, maxSize string
	bufferSize, watch                                   string
	buffer                                              int64
	sourceName, baseURL, subdomainHost                  string
	ports, apiPorts                                     []uint
	raw, force, base64                                  bool
	workers                                             int
	maxDuration, ring                                   time.Duration

	ringMu   sync.Mutex
	recorder *trace.Ring // the flight recorder, once the capture has begun
	stdoutMu sync.Mutex  // dumps onto -o -, one at a time
	stdout   io.Writer
}

// run checks the flags, sets up the anonymization, opens the packet
// source, captures, and says what it wrote.
func (c *captureCmd) run(cmd *cobra.Command) error {
	stderr := cmd.ErrOrStderr()
	c.stdout = cmd.OutOrStdout()
	limit, err := c.check()
	if err != nil {
		return err
	}
	o := capture.Options{Ports: toPorts(c.ports), APIPorts: toPorts(c.apiPorts), Raw: c.raw, Workers: c.workers, Log: slog.Default()}
	if c.pcap != "" {
		o.MaxDuration = c.maxDuration // a file's packets carry their own time
	}
	anon, err := c.anonymize(cmd, &o)
	if err != nil {
		return err
	}
	src, source, err := c.open(o)
	if err != nil {
		return err
	}
	defer src.Close()

	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	if c.iface != "" && c.maxDuration > 0 {
		// Live: an idle port brings no packets whose time could end it.
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, c.maxDuration)
		defer stop()
	}
	show := newCaptureDisplay(stderr, c.iface != "")
	var (
		w         *trace.Writer
		stoppedBy string
	)
	o.Progress = func(n capture.Counters) {
		show.update(n)
		if limit > 0 && w != nil {
			if st, err := os.Stat(c.out); err == nil && st.Size() >= limit {
				stoppedBy = fmt.Sprintf("--max-size %s reached", c.maxSize)
				cancel()
			}
		}
	}
	stopDumps := func() {}
	if c.ring > 0 {
		stopDumps = c.dumpOnTriggers(ctx, stderr)
	}
	counters, runErr := capture.Run(ctx, src, func(start time.Time) (capture.RecordWriter, error) {
		h := trace.Header{Format: trace.FormatName, Version: trace.Version, Start: start, Source: source,
			Anon: anon, Tool: version.Tool(), Note: c.note}
		var err error
		if c.ring > 0 {
			r, err := trace.NewRing(c.ringDir(), h, c.ring, nil)
			if err != nil {
				return nil, err
			}
			c.setRing(r)
			return r, nil
		}
		if c.out == "-" {
			var out io.Writer = cmd.OutOrStdout()
			if c.base64 {
				out = wire.NewWriter(out)
			}
			w, err = trace.NewWriter(out, h, nil)
			return w, err
		}
		w, err = trace.Create(c.out, h, &trace.WriterOptions{Overwrite: c.force})
		return w, err
	}, o)
	stopDumps() // before the last dump, which removes the segments
	show.done(counters)
	if stoppedBy == "" && c.maxDuration > 0 && (counters.Duration >= c.maxDuration || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		stoppedBy = "--max-duration reached"
	}
	if stoppedBy == "" && cmd.Context().Err() != nil {
		stoppedBy = "interrupted"
	}
	if r := c.getRing(); r != nil {
		return c.lastDump(cmd.Context(), stderr, r, counters, stoppedBy, runErr)
	}
	if w == nil {
		return runErr
	}
	if err := w.Close(); err != nil && runErr == nil {
		runErr = err
	}
	c.summarize(stderr, w.Records(), counters, o, stoppedBy)
	return runErr
}

// setRing and getRing guard the flight recorder, which the capture creates
// and the signal handler dumps.
func (c *captureCmd) setRing(r *trace.Ring) {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	c.recorder = r
}

func (c *captureCmd) getRing() *trace.Ring {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	return c.recorder
}

// dumpOnTriggers writes the flight recorder out, under the output's name
// with the time, each time the process gets SIGUSR1 or (with --watch) a
// watched process exits, and goes on recording.
func (c *captureCmd) dumpOnTriggers(ctx context.Context, stderr io.Writer) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	exits := make(chan procwatch.Exit, 8)
	wctx, cancelWatch := context.WithCancel(ctx)
	if c.watch != "" {
		go func() {
			if err := procwatch.Watch(wctx, c.watch, time.Second, exits); err != nil {
				fmt.Fprintf(stderr, "flight recorder: --watch: %v\n", err)
			}
		}()
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			var why string
			select {
			case <-quit:
				return
			case <-sig:
				why = "SIGUSR1"
			case e := <-exits:
				why = "the watched " + e.String()
			}
			r := c.getRing()
			if r == nil {
				fmt.Fprintf(stderr, "flight recorder: %s, but nothing is recorded yet\n", why)
				continue
			}
			path := stampedName(c.out, time.Now())
			res, err := c.dumpOut(ctx, r, path, nil)
			if c.out == "-" {
				path = c.outName()
			}
			if err != nil {
				fmt.Fprintf(stderr, "flight recorder: %s: %v (recording goes on)\n", why, err)
				continue
			}
			fmt.Fprintf(stderr, "flight recorder: wrote %s: %d records, the last %s of the capture (%s; recording goes on)\n", path, res.Records, c.ring, why)
		}
	}()
	return func() {
		signal.Stop(sig)
		cancelWatch()
		close(quit)
		<-done
	}
}

// ringDir is where the flight recorder keeps its segments.
func (c *captureCmd) ringDir() string {
	if c.out == "-" {
		return "hubreplay-capture.ring" // in the working directory: the tap container's own layer
	}
	return c.out + ".ring"
}

// dumpOut writes the flight recorder out: to path, or with -o - onto
// standard output, one trace after another (--base64: separated for the
// tap, which writes each to a file of its own).
func (c *captureCmd) dumpOut(ctx context.Context, r *trace.Ring, path string, opts *trace.WriterOptions) (trace.SliceResult, error) {
	if c.out != "-" {
		return r.Dump(ctx, path, opts)
	}
	c.stdoutMu.Lock()
	defer c.stdoutMu.Unlock()
	if !c.base64 {
		return r.DumpTo(ctx, c.stdout, opts)
	}
	w := wire.NewWriter(c.stdout)
	res, err := r.DumpTo(ctx, w, opts)
	if err == nil {
		err = w.EndTrace()
	}
	return res, err
}

// lastDump writes the flight recorder out to -o at the end of the capture
// and removes its segments, or leaves them and says where when it cannot.
func (c *captureCmd) lastDump(ctx context.Context, stderr io.Writer, r *trace.Ring, n capture.Counters, stoppedBy string, runErr error) error {
	opts := &trace.WriterOptions{Overwrite: c.force}
	// Not cut short by Ctrl-C: the interrupt is what asks for this dump.
	res, err := c.dumpOut(context.WithoutCancel(ctx), r, c.out, opts)
	if err != nil {
		_ = r.Close(false)
		return fmt.Errorf("%w; the segments stay in %s.ring/, each a trace", err, c.out)
	}
	if err := r.Close(true); err != nil && runErr == nil {
		runErr = err
	}
	fmt.Fprintf(stderr, "wrote %s: %d records, the last %s of a capture of %d packets over %s: %d HTTP exchanges, %d WebSocket frames, %d route events, %d gaps (%d bytes lost), %d connections in all%s\n",
		c.outName(), res.Records, c.ring, n.Packets, n.Duration.Round(time.Millisecond), n.Exchanges, n.Frames,
		n.Routes, n.Gaps, n.GapBytes, n.Streams, why(stoppedBy))
	return runErr
}

// check validates the flags before anything is opened; it returns the
// --max-size limit in bytes (0: none).
func (c *captureCmd) check() (int64, error) {
	if (c.pcap == "") == (c.iface == "") {
		return 0, usageError{errors.New("capture needs exactly one of --pcap FILE or --iface NAME")}
	}
	if c.out == "" {
		return 0, usageError{errors.New("capture needs -o TRACE, the file to write")}
	}
	limit, err := parseSize(c.maxSize)
	if err != nil {
		return 0, usageError{fmt.Errorf("--max-size: %w", err)}
	}
	if c.buffer, err = parseSize(c.bufferSize); err != nil {
		return 0, usageError{fmt.Errorf("--buffer-size: %w", err)}
	}
	if c.out == "-" && c.maxSize != "" {
		return 0, usageError{errors.New("-o - streams the trace: --max-size needs a file")}
	}
	if c.base64 && c.out != "-" {
		return 0, usageError{errors.New("--base64 is for -o - (a trace streamed as text)")}
	}
	if c.ring > 0 && c.maxSize != "" {
		return 0, usageError{errors.New("--ring bounds the disk by time; it cannot be combined with --max-size")}
	}
	if c.watch != "" && c.ring == 0 {
		return 0, usageError{errors.New("--watch triggers the flight recorder: give --ring too")}
	}
	if c.workers < 0 {
		return 0, usageError{fmt.Errorf("--workers %d: give how many, or 0 for one per processor", c.workers)}
	}
	if c.ring < 0 {
		return 0, usageError{fmt.Errorf("--ring %s: give how much to keep, e.g. 30m", c.ring)}
	}
	if _, err := os.Stat(c.out); c.ring > 0 && c.out != "-" && err == nil && !c.force {
		// Said now, not when the recording is written out hours later.
		return 0, usageError{fmt.Errorf("%s exists; the flight recorder writes it at the end: give another -o, or --force", c.out)}
	}
	if c.raw && (c.keyFile != "" || c.rulesFile != "") {
		return 0, usageError{errors.New("--raw keeps everything: it cannot be combined with --anon-key-file or --anon-rules")}
	}
	return limit, nil
}

// anonymize sets o's scrubber (unless --raw) and returns what the trace
// header says of it.
func (c *captureCmd) anonymize(cmd *cobra.Command, o *capture.Options) (trace.Anonymization, error) {
	if c.raw {
		stderr := cmd.ErrOrStderr()
		fmt.Fprintln(stderr, "WARNING: --raw: this trace will hold passwords, API tokens, cookies, users' code and file contents as")
		fmt.Fprintln(stderr, "WARNING: they crossed the proxy. Keep it off shared disks, never attach it to an issue, delete it after use.")
		return trace.Anonymization{Scheme: "none", Raw: true}, nil
	}
	key := anonymize.RandomKey()
	var err error
	if c.keyFile != "" {
		if key, err = anonymize.ReadKeyFile(c.keyFile); err != nil {
			return trace.Anonymization{}, err
		}
	}
	rules := anonymize.DefaultRules()
	if c.rulesFile != "" {
		if rules, err = anonymize.LoadRules(c.rulesFile); err != nil {
			return trace.Anonymization{}, err
		}
	}
	if cmd.Flags().Changed("base-url") {
		rules.BaseURL = c.baseURL
	}
	if cmd.Flags().Changed("subdomain-host") {
		rules.SubdomainHost = c.subdomainHost
	}
	if o.Scrub, err = anonymize.New(key, rules); err != nil {
		return trace.Anonymization{}, err
	}
	return trace.Anonymization{Scheme: anonymize.Scheme}, nil
}

// open opens the packet source and names it for the header: never by a
// capture file's name (operators name them after the hub).
func (c *captureCmd) open(o capture.Options) (capture.Source, string, error) {
	source := "pcap"
	var src capture.Source
	var err error
	if c.pcap != "" {
		src, err = capture.OpenFile(c.pcap)
	} else {
		src, err = capture.OpenLive(c.iface, append(o.Ports, o.APIPorts...), int(c.buffer))
		source = "iface:" + c.iface
	}
	if c.sourceName != "" {
		source = c.sourceName
	}
	return src, source, err
}

// outName is how the summary names -o.
func (c *captureCmd) outName() string {
	if c.out == "-" {
		return "standard output"
	}
	return c.out
}

// why puts what stopped the capture in brackets, if anything did.
func why(stoppedBy string) string {
	if stoppedBy == "" {
		return ""
	}
	return " (" + stoppedBy + ")"
}

// summarize says what the trace holds, and what looked wrong.
func (c *captureCmd) summarize(stderr io.Writer, records uint64, n capture.Counters, o capture.Options, stoppedBy string) {
	fmt.Fprintf(stderr, "wrote %s: %d records from %d packets over %s: %d HTTP exchanges, %d WebSocket frames, %d route events, %d gaps (%d bytes lost), %d connections%s\n",
		c.outName(), records, n.Packets, n.Duration.Round(time.Millisecond), n.Exchanges, n.Frames,
		n.Routes, n.Gaps, n.GapBytes, n.Streams, why(stoppedBy))
	if d := n.Drops["kernel"]; d > 0 {
		fmt.Fprintf(stderr, "warning: %d packets were dropped because the capture's buffers were full (the kernel's ring, or the queue behind it); the trace has gaps where they were (raise --buffer-size, or capture with tcpdump and use --pcap)\n", d)
	}
	if n.ParseErrors > 0 || n.Orphans > 0 {
		fmt.Fprintf(stderr, "note: %d stretches of bytes were not HTTP or WebSocket as expected and were skipped, %d responses had no request in the capture (-v logs where)\n",
			n.ParseErrors, n.Orphans)
	}
	if n.Packets > 0 && n.Streams == 0 {
		fmt.Fprintf(stderr, "note: no TCP connection on port(s) %s was seen; is --port right?\n", portList(o.Ports))
	}
}

func toPorts(in []uint) []uint16 {
	out := make([]uint16, 0, len(in))
	for _, p := range in {
		out = append(out, uint16(p))
	}
	return out
}

func portList(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

// parseSize reads sizes like 500MB, 2GiB, 1048576, and as Kubernetes
// writes them (z2jh's values): 1Gi and 512Mi are binary, 1G and 500M
// decimal (10^9, 5·10^8).
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40}, {"KI", 1 << 10}, {"MI", 1 << 20}, {"GI", 1 << 30}, {"TI", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"B", 1}}
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, x := range units {
		if n, ok := strings.CutSuffix(u, x.suffix); ok {
			u, mult = strings.TrimSpace(n), x.mult
			break
		}
	}
	n, err := strconv.ParseFloat(u, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size like 500MB or 2GiB", s)
	}
	return int64(n * float64(mult)), nil
}

// captureDisplay shows a capture's counters on stderr: one line rewritten
// in place on a terminal, a plain line every 10 s elsewhere (live only).
type captureDisplay struct {
	w     io.Writer
	tty   bool
	live  bool
	last  time.Time
	shown bool
}

func newCaptureDisplay(w io.Writer, live bool) *captureDisplay {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &captureDisplay{w: w, tty: tty, live: live}
}

func (d *captureDisplay) line(c capture.Counters) string {
	return fmt.Sprintf("capture %s: %d packets, %.1f MB, %d kernel drops, %d connections (%d open), %d gaps, %d records",
		c.Duration.Truncate(time.Second), c.Packets, float64(c.Bytes)/1e6, c.Drops["kernel"], c.Streams, c.Open, c.Gaps, c.Records)
}

func (d *captureDisplay) update(c capture.Counters) { d.lineUpdate(d.line(c)) }

func (d *captureDisplay) done(c capture.Counters) {
	if d.shown {
		d.lineUpdate(d.line(c))
	}
	d.finish()
}

// lineUpdate shows line: rewritten in place on a terminal, every 10 s
// elsewhere (live only).
func (d *captureDisplay) lineUpdate(line string) {
	switch {
	case d.tty:
		fmt.Fprintf(d.w, "\r%s\033[K", line)
		d.shown = true
	case d.live && time.Since(d.last) >= 10*time.Second:
		d.last = time.Now()
		fmt.Fprintln(d.w, line)
	}
}

// finish ends the line rewritten in place.
func (d *captureDisplay) finish() {
	if d.shown {
		fmt.Fprintln(d.w)
		d.shown = false
	}
}

// stampedName is a flight recorder's file for a dump at t: TRACE's name
// with the time, and a number when that second already has one.
func stampedName(out string, t time.Time) string {
	base := strings.TrimSuffix(out, ".trace") + "-" + t.UTC().Format("20060102T150405Z")
	path := base + ".trace"
	for i := 2; ; i++ {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return path
		}
		path = fmt.Sprintf("%s-%d.trace", base, i)
	}
}
