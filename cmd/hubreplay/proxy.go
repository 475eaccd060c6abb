//go:build !tapimage

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/proxy"
)

func newProxyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run a candidate proxy build the way z2jh runs it, and watch it",
	}
	var (
		port, apiPort                  int
		defaultTarget, memLimit, limit string
		restartDelay, every            time.Duration
		asJSON, showLog                bool
	)
	run := &cobra.Command{
		Use:   "run SPEC",
		Short: "Start a candidate, print its ports and token, stream its samples until Ctrl-C",
		Long: `run obtains a candidate (installing an npm release into the cache the first
time), starts it with the flags JupyterHub and z2jh give configurable-http-proxy
(--ip, --port, --api-ip, --api-port, --default-target, --error-target,
--log-level, --metrics-port where the build has it; the token in
CONFIGPROXY_AUTH_TOKEN: yours when it is set, else a random one it prints),
waits until it is ready, and then prints a sample
every --sample-every: resident memory, CPU, open files, TCP sockets by state,
Node's heap, and counts of the log lines that matter (EPIPE, ECONNRESET,
socket hang up, uncaught exceptions, heap limit). A candidate that dies is
restarted after --restart-delay, and its exit is printed with its cause.

` + proxy.SpecHelp,
		Example: `  hubreplay proxy run chp@4.5.6
  hubreplay proxy run chp:../configurable-http-proxy --memory-limit 1Gi --default-target http://127.0.0.1:8081
  hubreplay proxy run chp@latest --json > samples.jsonl`,
		Args: exactArgs(1, "a candidate SPEC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := proxy.ParseSpec(args[0])
			if err != nil {
				return usageError{err}
			}
			mem, err := parseSize(memLimit)
			if err != nil {
				return usageError{fmt.Errorf("--memory-limit: %w", err)}
			}
			if limit != "" && limit != "cgroup" && limit != "node" {
				return usageError{fmt.Errorf("--limit-by %q: cgroup or node", limit)}
			}
			out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			ctx := cmd.Context()
			fmt.Fprintf(stderr, "obtaining %s ...\n", spec)
			p, err := proxy.Obtain(ctx, spec, nil)
			if err != nil {
				return err
			}
			// The operator's token, as CHP itself takes it, so that fixtures
			// and replay in another shell can be given the same one.
			token := os.Getenv("CONFIGPROXY_AUTH_TOKEN")
			o := proxy.Options{Port: port, APIPort: apiPort, DefaultTarget: defaultTarget, MemoryLimit: mem, LimitBy: limit,
				RestartDelay: restartDelay, SampleEvery: every, Token: token}
			if showLog {
				o.Output = stderr
			}
			c, err := proxy.Start(ctx, p, o)
			if err != nil {
				return err
			}
			_, _, metrics := c.Ports()
			tokenSays := "its token from CONFIGPROXY_AUTH_TOKEN"
			if token == "" {
				tokenSays = "token " + c.Token() + ": export CONFIGPROXY_AUTH_TOKEN=" + c.Token() + " for fixtures and replay"
			}
			fmt.Fprintf(stderr, "%s (version %s) is up: proxy %s, API %s (%s), metrics port %d, memory limit: %s\n",
				spec, p.Version, c.URL(), c.APIURL(), tokenSays, metrics, c.Limit())
			seenSamples, seenExits := 0, 0
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					_ = c.Stop()
					printExits(stderr, c.Exits()[seenExits:], false)
					return nil
				case <-tick.C:
				}
				samples := c.Samples()
				for _, s := range samples[seenSamples:] {
					printSample(out, s, asJSON)
				}
				seenSamples = len(samples)
				exits := c.Exits()
				printExits(stderr, exits[seenExits:], true)
				seenExits = len(exits)
			}
		},
	}
	f := run.Flags()
	f.IntVar(&port, "port", 0, "public port (default: a free one)")
	f.IntVar(&apiPort, "api-port", 0, "API port (default: a free one)")
	f.StringVar(&defaultTarget, "default-target", "", "the hub, e.g. a fixtures hub stub")
	f.StringVar(&memLimit, "memory-limit", "", "cap memory like a pod limit, e.g. 1Gi (z2jh's proxy often has 512Mi–1Gi)")
	f.StringVar(&limit, "limit-by", "", "how to cap memory: cgroup or node (default: cgroup where the machine has one)")
	f.DurationVar(&restartDelay, "restart-delay", 10*time.Second, "how long a dead candidate stays down before it is restarted")
	f.DurationVar(&every, "sample-every", time.Second, "sampling interval")
	f.BoolVar(&asJSON, "json", false, "print samples as JSON lines")
	f.BoolVar(&showLog, "log", false, "copy the candidate's own log to stderr")
	cmd.AddCommand(run)
	return cmd
}

func printSample(w io.Writer, s proxy.Sample, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(s)
		fmt.Fprintln(w, string(b))
		return
	}
	if !s.Up {
		fmt.Fprintf(w, "%s  down (starts %d)\n", s.At.Format("15:04:05"), s.Starts)
		return
	}
	fmt.Fprintf(w, "%s  pid %d  rss %.1f MB  cpu %.2fs  fds %d  tcp est %d close_wait %d time_wait %d  heap %.1f MB  epipe %d econnreset %d\n",
		s.At.Format("15:04:05"), s.PID, float64(s.RSS)/1e6, s.CPU.Seconds(), s.FDs, s.Sockets["ESTABLISHED"], s.Sockets["CLOSE_WAIT"],
		s.Sockets["TIME_WAIT"], float64(s.HeapUsed)/1e6, s.Logs["epipe"], s.Logs["econnreset"])
}

func printExits(w io.Writer, exits []proxy.Exit, restarting bool) {
	for _, e := range exits {
		then := ""
		if restarting && !e.Stopped {
			then = "; restarting after the delay"
		}
		fmt.Fprintf(w, "%s  candidate exited after %s: %s%s\n", e.At.Format("15:04:05"), e.Uptime.Round(time.Millisecond), e.Cause, then)
	}
}
