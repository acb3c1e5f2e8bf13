# hil: a hardware-in-the-loop bench for satellite payloads.
# Quick start: `make run` (the signaling feature on the sim bench) and
# `make test` (every test). Neither needs root, hardware or a service.

GO      ?= go
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/satbench/hil/harness/cli.Version=$(VERSION)
# The suite's overall bound; no single test is timed.
TEST_TIMEOUT ?= 20m

# MinIO, the real S3 server of the tests that need one and of the qemu
# bench. Its module has no release tags: pin a pseudo-version (the same as
# store.MinIOVersion) and build it once into a cache keyed by version.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_DIR     := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hil/minio/$(MINIO_VERSION)
MINIO         := $(MINIO_DIR)/minio

.PHONY: all build run test vet bench clean minio minio-path

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/hil ./cmd/hil

# The main job: every feature on the default sim bench (reference payload
# as a local process, embedded S3 on loopback). It moves a 1 GiB file, so
# it needs about 2 GiB free in the temp directory ($TMPDIR, else /tmp).
run: build
	./bin/hil run --bench benches/sim.yaml features

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

test: vet
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	@# Every benchmark once, so that none rots between `make bench` runs;
	@# the figures are not the point here, so they are shown only on failure.
	@echo "$(GO) test -run '^$$' -bench . -benchtime 1x ./..."
	@out=$$(mktemp); $(GO) test -run '^$$' -bench . -benchtime 1x -timeout $(TEST_TIMEOUT) ./... > $$out 2>&1 \
		|| { cat $$out; rm -f $$out; exit 1; }; rm -f $$out

# Benchmarks report figures; they assert nothing.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./harness/bus/ ./harness/downlink/ ./harness/store/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./harness/perf/

clean:
	rm -rf bin

# `make minio` builds the pinned MinIO server unless it is cached (a cold
# build takes about 5 minutes and 1.5 GB; tests find it there, or through
# HIL_MINIO). `make -s minio-path` prints where it is.
minio: $(MINIO)

$(MINIO):
	rm -rf $(MINIO_DIR).tmp
	GOBIN=$(MINIO_DIR).tmp GOFLAGS=-trimpath $(GO) install -ldflags='-s -w' github.com/minio/minio@$(MINIO_VERSION)
	mkdir -p $(MINIO_DIR)
	mv $(MINIO_DIR).tmp/minio $(MINIO)
	rmdir $(MINIO_DIR).tmp

minio-path:
	@echo $(MINIO)
