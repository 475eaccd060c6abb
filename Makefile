# hubreplay — see README.md. Everything builds into build/.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -X github.com/hubreplay/hubreplay/internal/version.Version=$(VERSION)
BIN      := build/hubreplay
FUZZTIME ?= 3m
# Where tests keep configurable-http-proxy releases (internal/testenv reads the same place).
TESTCACHE ?= $(or $(HUBREPLAY_TEST_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hubreplay-test)
CHP_VERSIONS ?= 4.5.6 5.3.0

.PHONY: all build tap-binary install test bench fuzz demo chp clean

all: build

build:
	@echo "building $(BIN) (the first build downloads and compiles the modules: a few minutes)"
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hubreplay

# The tap image's binary (Dockerfile.tap builds the same): capture only,
# static and stripped, for production pods.
tap-binary:
	CGO_ENABLED=0 $(GO) build -tags tapimage -trimpath -ldflags '-s -w $(LDFLAGS)' -o build/hubreplay-tap ./cmd/hubreplay

# hubreplay on PATH, as the README's commands call it: PREFIX/bin
# (default ~/.local/bin; PREFIX=/usr/local with sudo for everyone).
PREFIX ?= $(HOME)/.local
install: build
	install -d "$(PREFIX)/bin"
	install -m 0755 $(BIN) "$(PREFIX)/bin/hubreplay"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "add $(PREFIX)/bin to PATH to run hubreplay";; esac

# configurable-http-proxy releases from npm for the tests that run real
# proxies (tests install a missing one themselves; this does it up front).
chp:
	@for v in $(CHP_VERSIONS); do \
		d="$(TESTCACHE)/chp@$$v"; \
		if [ -x "$$d/node_modules/configurable-http-proxy/bin/configurable-http-proxy" ]; then echo "chp@$$v: $$d"; continue; fi; \
		mkdir -p "$$d" && npm install --no-audit --no-fund --prefix "$$d" "configurable-http-proxy@$$v" >/dev/null && echo "chp@$$v: installed in $$d" || exit 1; \
	done

# The tests: vet, then every package under the race detector. -count=1:
# many tests run real programs (tcpdump, CHP, node), whose results Go's test
# cache must not stand in for. -timeout 30m: a package's tests take up to 8
# minutes on an idle 2-core machine, and longer on a loaded one. internal/testsummary prints a line per
# package as it ends, each failed test's last lines, and every skipped test
# with its reason; the whole output stays in build/test.json.
test:
	$(GO) vet ./...
	@mkdir -p build && $(GO) build -o build/testsummary ./internal/testsummary
	@{ $(GO) test -race -count=1 -timeout 30m -json ./... 2>&1; echo $$? > build/test.status; } | tee build/test.json | build/testsummary; \
		st=$$?; [ "$$(cat build/test.status)" = 0 ] || st=1; \
		[ $$st = 0 ] || echo "make test: failed; every line is in build/test.json"; exit $$st

# Benchmarks print their figures (records/s, MB/s, bytes/record); they
# assert nothing. The side-by-side ones (BenchmarkVersusTshark,
# BenchmarkVersusWrkAndGoReplay) need tshark, wrk and libpcap-dev, which
# scripts/bench-tools installs; BENCHMARKS.md has the figures.
bench:
	@scripts/bench-tools
	$(GO) test -p 1 -run '^$$' -bench . -benchmem -timeout 60m ./...

# Each fuzz target for FUZZTIME (3 minutes: about 21 for all; CI runs
# 20 s each); seeds live in */testdata/fuzz and run in `make test`.
# scripts/fuzz tells Go 1.26's end-of-run deadline race from a finding.
FUZZ_TARGETS := trace:FuzzReader trace:FuzzParseJSON capture/httpstream:FuzzStream \
	capture/wsframe:FuzzFrames capture:FuzzPcap capture/anonymize:FuzzAnonymize internal/sockstat:FuzzParse \
	tap/wire:FuzzReader
fuzz:
	@for t in $(FUZZ_TARGETS); do scripts/fuzz $${t%%:*} $${t##*:} $(FUZZTIME) || exit 1; done

# The demo asks the incident's question: does the proxy leak when
# students' laptops vanish? A generated lecture peak (300 students, 10
# minutes; some vanish mid-download and mid-stream, some leave a tab open
# on a stopped server) is replayed at 5x (what this harness holds 4.5.6
# at) against configurable-http-proxy
# 4.5.6 (what the hubs ran during the incidents) and 4.6.2 (the fork with
# the socket-leak fix), each behind fresh fixtures whose servers go on
# talking after their clients vanished. The report shows the sockets 4.5.6
# left per 1,000 vanished clients, which 4.6.2 does not leave (both keep
# sockets of the tabs left open on stopped servers: the leak CHP 5.1.0
# fixed; try DEMO_B=chp@5). A regression (exit status 1) is a finding, not
# a failed demo; status 2 is.
DEMO_A ?= chp@4.5.6
DEMO_B ?= chp@4.6.2
demo: build
	@rm -rf build/demo.trace build/demo-compare
	$(BIN) generate lecture-peak --users 300 --duration 10m -o build/demo.trace
	$(BIN) inspect --tz UTC build/demo.trace
	$(BIN) compare --trace build/demo.trace --a $(DEMO_A) --b $(DEMO_B) --speed 5 -o build/demo-compare; \
		rc=$$?; [ $$rc -le 1 ] || exit $$rc
	@if [ -n "$$DISPLAY" ] && command -v xdg-open >/dev/null; then xdg-open build/demo-compare/report.html; fi

clean:
	rm -rf build
