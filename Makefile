# Outpost. `make test` is what CI runs (see .ci/run); `make run` starts the
# whole system on one machine with embedded defaults.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin

.PHONY: test test-long deps run bench lint

deps:
	bash scripts/setup-test-deps.sh

test:
	$(GO) test -race -count=1 -timeout 12m ./...

# Long soak, kill and fuzz runs: more rounds, not run in CI.
test-long:
	OUTPOST_LONG=1 $(GO) test -race -count=1 -timeout 60m ./...

lint:
	gofmt -l $$(git ls-files '*.go')
	$(GO) vet ./...
	staticcheck ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./edge/log/

# The whole system on one machine: core with embedded NATS, an edge node
# forwarding to it, and a fleet of simulated devices. Ctrl-C stops.
run:
	bash scripts/demo.sh
