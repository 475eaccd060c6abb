# hubreplay — see README.md. Everything builds into build/.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -X github.com/hubreplay/hubreplay/internal/version.Version=$(VERSION)
BIN      := build/hubreplay
FUZZTIME ?= 30s
# Where tests keep configurable-http-proxy releases (internal/testenv reads the same place).
TESTCACHE ?= $(or $(HUBREPLAY_TEST_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hubreplay-test)
CHP_VERSIONS ?= 4.5.6 5.3.0

.PHONY: all build test bench fuzz demo chp clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hubreplay

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
# cache must not stand in for.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

# Benchmarks print their figures (records/s, MB/s, bytes/record); they assert nothing.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Each fuzz target for FUZZTIME; seeds live in */testdata/fuzz and run in
# `make test`. scripts/fuzz tells Go 1.26's end-of-run deadline race from a finding.
FUZZ_TARGETS := trace:FuzzReader trace:FuzzParseJSON capture/httpstream:FuzzStream \
	capture/wsframe:FuzzFrames capture:FuzzPcap capture/anonymize:FuzzAnonymize
fuzz:
	@for t in $(FUZZ_TARGETS); do scripts/fuzz $${t%%:*} $${t##*:} $(FUZZTIME) || exit 1; done

# The demo, for now: generate a lecture peak, look at it, cut its busiest
# minutes out, look at that. (Later: replay it against two CHP versions.)
demo: build
	@rm -f build/demo.trace build/demo-peak.trace
	$(BIN) generate lecture-peak --users 120 --duration 20m -o build/demo.trace
	$(BIN) inspect --tz UTC build/demo.trace
	$(BIN) slice build/demo.trace --tz UTC --from 14:15 --to +14m -o build/demo-peak.trace
	$(BIN) inspect --tz UTC build/demo-peak.trace
	@echo '--- first records of the peak (hubreplay cat build/demo-peak.trace | head -4):'
	@$(BIN) cat build/demo-peak.trace | head -4

clean:
	rm -rf build
