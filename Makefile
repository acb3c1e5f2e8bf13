# hil: a hardware-in-the-loop bench for satellite payloads.
# Quick start: `make run` (the signaling feature on the sim bench) and
# `make test` (every test). Neither needs root, hardware or a service.

GO      ?= go
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/satbench/hil/harness/cli.Version=$(VERSION)
# The suite's overall bound; no single test is timed.
TEST_TIMEOUT ?= 20m

.PHONY: all build run test vet bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/hil ./cmd/hil

# The main job: every feature on the default sim bench (reference payload
# as a local process, embedded S3 on loopback).
run: build
	./bin/hil run --bench benches/sim.yaml features

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

test: vet
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

# Benchmarks report figures; they assert nothing.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./harness/bus/ ./harness/downlink/ ./harness/store/

clean:
	rm -rf bin
