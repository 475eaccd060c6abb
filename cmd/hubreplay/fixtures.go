//go:build !tapimage

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/fixtures/lecturepeak"
	"github.com/hubreplay/hubreplay/internal/version"
	"github.com/hubreplay/hubreplay/trace"
)

func newGenerateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate KIND -o TRACE",
		Short: "Make a synthetic trace (lecture-peak) for when there is no capture yet",
	}
	var (
		out               string
		users             int
		duration, arrival time.Duration
		seed              uint64
		force             bool
	)
	peak := &cobra.Command{
		Use:   "lecture-peak -o TRACE",
		Short: "A lecture's start: hundreds of students log in, spawn, load JupyterLab and run cells",
		Long: `lecture-peak writes a synthetic trace with the shape of the incidents hubreplay
was made for: the lecture starts two minutes in, most students arrive within
--arrival, log in, wait for their server (route adds), load JupyterLab (the
OAuth dance, ~35 assets, the API calls), open kernel, event and sometimes
terminal WebSockets, and then poll (JupyterLab's 10 s services, the 5 s
resource-usage metrics), run cells about every 40 s, autosave every 120 s.
8% of laptops vanish without closing anything; at the end students leave,
some stop their servers, and the culler removes the vanished ones.

Each rate and size, and where it comes from, is in fixtures/lecturepeak.
The same options give the same file, byte for byte.`,
		Example: `  hubreplay generate lecture-peak -o peak.trace
  hubreplay generate lecture-peak --users 500 --duration 45m --seed 7 -o big.trace`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{errors.New("generate needs -o TRACE, the file to write")}
			}
			if users <= 0 || users > 100000 {
				return usageError{fmt.Errorf("--users %d: give 1 to 100000 students", users)}
			}
			if duration < 5*time.Minute {
				return usageError{fmt.Errorf("--duration %s: a lecture peak needs at least 5m", duration)}
			}
			h, recs := lecturepeak.Generate(lecturepeak.Options{Users: users, Duration: duration, Arrival: arrival, Seed: seed})
			h.Tool = version.Tool()
			// Frames are cut by count only, so the file depends on the options alone.
			w, err := trace.Create(out, h, &trace.WriterOptions{Overwrite: force, FlushInterval: 24 * time.Hour})
			if err != nil {
				return err
			}
			for _, r := range recs {
				if err := w.Write(r); err != nil {
					w.Close()
					return err
				}
			}
			if err := w.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %d records, %d students over %s (seed %d)\n", out, w.Records(), users, duration, seed)
			return nil
		},
	}
	f := peak.Flags()
	f.StringVarP(&out, "output", "o", "", "the trace file to write (required)")
	f.IntVar(&users, "users", 300, "students")
	f.DurationVar(&duration, "duration", 30*time.Minute, "length of the trace")
	f.DurationVar(&arrival, "arrival", 4*time.Minute, "most students arrive within this after the lecture starts")
	f.Uint64Var(&seed, "seed", 1, "random seed")
	f.BoolVar(&force, "force", false, "replace the output file if it exists")
	cmd.AddCommand(peak)
	return cmd
}

func newFixturesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fixtures",
		Short: "Run the hub stub and user-server emulators for a trace",
	}
	var (
		tracePath, api, tokenEnv, hubListen string
		userIP, advertise                   string
		play                                playFlags
		check                               time.Duration
	)
	serve := &cobra.Command{
		Use:   "serve --trace TRACE [--api URL]",
		Short: "Serve the hub stub and emulators until interrupted",
		Long: `serve starts what stands behind the proxy for a replay of TRACE: a hub stub (the
proxy's --default-target) and one emulated user server per route target in
the trace, each on its own loopback port. They answer requests that carry an
X-Hubreplay-Record header with that record's status, headers, body size and
server time (divided by --speed), and play recorded WebSocket sessions.

With --api, the hub stub also drives the proxy's REST API as JupyterHub does:
the recorded route adds and deletes at their (scaled) times from now (or
--start-at), and a check every --check-routes-interval (scaled too) that puts
back routes the proxy lost. The token is read from the environment variable
--token-env names (CONFIGPROXY_AUTH_TOKEN, as CHP itself reads it). Give it
the same --speed, --users, --jitter, --seed, --from/--to and --start-at as
the replay (or its shards, run with --fixtures=false), so that the routes
are the ones the replay's users need.`,
		Example: `  CONFIGPROXY_AUTH_TOKEN=secret hubreplay fixtures serve --trace peak.trace --api http://127.0.0.1:8001 --speed 4 \
      --start-at 2026-11-25T15:00:00Z
  hubreplay replay --trace peak.trace --target http://127.0.0.1:8000 --fixtures=false --speed 4 \
      --start-at 2026-11-25T15:00:00Z --shard 0/2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tracePath == "" {
				return usageError{errors.New("fixtures serve needs --trace TRACE")}
			}
			token := os.Getenv(tokenEnv)
			if api != "" && token == "" {
				return usageError{fmt.Errorf("--api needs the proxy's token in $%s", tokenEnv)}
			}
			plan, recs, err := play.plan(cmd.Context(), tracePath, nil, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			speed := stubSpeed(plan.Opts.Speed)
			ix, resp, srv, err := startFixtures(cmd.Context(), recs, speed, play.serverTail, fixtures.Addrs{Hub: hubListen, UserIP: userIP, Advertise: advertise})
			if err != nil {
				return err
			}
			defer srv.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "hub stub (the proxy's --default-target): %s\n", srv.Hub())
			fmt.Fprintf(out, "user-server emulators: %d, for %d exchanges and %d WebSocket sessions\n", srv.Users(), len(ix.Exchanges), len(ix.Sessions))
			ctx := cmd.Context()
			var stub *fixtures.HubStub
			if api != "" {
				stub = &fixtures.HubStub{API: api, Token: token, Routes: plan.Routes, Target: srv.Target, Speed: speed, CheckInterval: check}
				if err := stub.Prime(ctx); err != nil {
					return err
				}
				start := play.start
				if start.IsZero() {
					start = time.Now()
				}
				fmt.Fprintf(out, "driving routes at %s: %d route events over %s from %s\n", api, len(plan.Routes),
					time.Duration(float64(plan.Length)/speed).Round(time.Second), start.Format(time.RFC3339))
				go func() { _ = stub.Run(ctx, start) }()
			}
			fmt.Fprintln(out, "serving until interrupted (Ctrl-C)")
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
			fmt.Fprintf(out, "answered %d requests from the trace (%d without a record), played %d WebSocket sessions\n",
				resp.Served.Load(), resp.Unknown.Load(), resp.Sessions.Load())
			if stub != nil {
				fmt.Fprintf(out, "route API: %s\n", apiCallsLine(stub.Calls()))
			}
			return nil
		},
	}
	f := serve.Flags()
	f.StringVar(&tracePath, "trace", "", "the trace to serve (required)")
	f.StringVar(&api, "api", "", "the proxy's REST API URL, e.g. http://127.0.0.1:8001; without it routes are not driven")
	f.StringVar(&tokenEnv, "token-env", "CONFIGPROXY_AUTH_TOKEN", "environment variable holding the proxy's API token")
	f.StringVar(&hubListen, "hub-listen", "127.0.0.1:8081", "where the hub stub listens (the proxy's --default-target)")
	f.StringVar(&userIP, "user-listen-ip", "127.0.0.1", "the IP the user-server emulators listen on (0.0.0.0 when the proxy runs elsewhere)")
	f.StringVar(&advertise, "advertise", "", "the host the proxy reaches the emulators at, put in the routes (default: the IP they listen on; in a pod: its IP)")
	play.add(f, false, true)
	f.DurationVar(&check, "check-routes-interval", fixtures.DefaultCheckInterval, "JupyterHub's check_routes interval, in trace time (z2jh's last_activity_interval; JupyterHub alone: 5m)")
	cmd.AddCommand(serve)
	return cmd
}
