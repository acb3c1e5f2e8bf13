# hil: a hardware-in-the-loop bench for satellite payloads.
# Quick start: `make run` (the signaling feature on the sim bench) and
# `make test` (every test). Neither needs root, hardware or a service.

GO      ?= go
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/satbench/hil/harness/cli.Version=$(VERSION)
# The suite's overall bound; no single test is timed.
TEST_TIMEOUT ?= 25m

# MinIO, the real S3 server of the tests that need one and of the qemu
# bench. Its module has no release tags: pin a pseudo-version (the same as
# store.MinIOVersion) and build it once into a cache keyed by version.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_DIR     := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hil/minio/$(MINIO_VERSION)
MINIO         := $(MINIO_DIR)/minio

# protoc, for `make generate`: Debian's package at a pinned version,
# checked against tools/protoc.sha256 and unpacked into a cache, so nothing
# is installed on the host and no root is needed. The Go plugins are the
# versions go.mod pins as tools.
PROTOC_VERSION := 3.21.12-3
PROTOC_DIR     := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hil/protoc/$(PROTOC_VERSION)
PROTOC_DEBS    := protobuf-compiler libprotoc32 libprotobuf32
GEN_BIN        := $(PROTOC_DIR)/bin

# The QEMU aarch64 payload image, for `make image` (fixtures/image): Debian's
# arm64 cloud kernel at a pinned version, checked against
# tools/kernel-arm64.sha256 and unpacked into a cache like protoc. A private
# APT configuration fetches the arm64 package from the host's sources
# without adding an architecture to the host, and without root.
KERNEL_PKG     := linux-image-6.1.0-50-cloud-arm64
KERNEL_VERSION := 6.1.176-1
KERNEL_DIR     := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hil/kernel/$(KERNEL_VERSION)
KERNEL_DEB     := $(KERNEL_DIR)/deb/$(KERNEL_PKG)_$(KERNEL_VERSION)_arm64.deb
KERNEL_APT     := APT_CONFIG=$(KERNEL_DIR).tmp/apt/apt.conf
IMAGE_DIR      := build/image
# QEMU, for the qemu bench: Debian's package at a pinned version. `make
# qemu` installs it (root), unless that version is installed already.
QEMU_VERSION   := 1:7.2+dfsg-7+deb12u18+b2

.PHONY: all build run test vet bench clean minio minio-path generate check-generated image qemu

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
	@echo "$(GO) test -short -run '^$$' -bench . -benchtime 1x ./..."
	@out=$$(mktemp); $(GO) test -short -run '^$$' -bench . -benchtime 1x -timeout $(TEST_TIMEOUT) ./... > $$out 2>&1 \
		|| { cat $$out; rm -f $$out; exit 1; }; rm -f $$out

# Benchmarks report figures; they assert nothing.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./harness/bus/ ./harness/downlink/ ./harness/store/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./harness/perf/
	$(GO) test -run '^$$' -bench . -benchtime 5x ./harness/qemu/ ./harness/netlab/

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

# `make generate` regenerates every committed generated file: the Payload
# Interface's gRPC code (protoc) and the OORT agent's OpenAPI clients.
# `make check-generated` (CI) fails if the committed files differ.
generate: $(GEN_BIN)/protoc
	$(GO) build -o $(GEN_BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o $(GEN_BIN)/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	PATH=$(GEN_BIN):$$PATH $(GO) generate ./...

check-generated: generate
	@git diff --exit-code -- . || { echo "generated code is stale: run make generate and commit the result"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all)" || { git status --short; echo "make generate left new files: commit them"; exit 1; }

$(GEN_BIN)/protoc:
	rm -rf $(PROTOC_DIR).tmp
	mkdir -p $(PROTOC_DIR).tmp/debs
	cd $(PROTOC_DIR).tmp/debs && apt-get download -q $(foreach p,$(PROTOC_DEBS),$(p)=$(PROTOC_VERSION)) \
		&& sha256sum --strict -c $(CURDIR)/tools/protoc.sha256
	for d in $(PROTOC_DIR).tmp/debs/*.deb; do dpkg-deb -x $$d $(PROTOC_DIR).tmp/root || exit 1; done
	mkdir -p $(PROTOC_DIR).tmp/bin
	printf '#!/bin/sh\nd=%s\nLD_LIBRARY_PATH=$$d/usr/lib/x86_64-linux-gnu exec $$d/usr/bin/protoc "$$@"\n' $(PROTOC_DIR)/root > $(PROTOC_DIR).tmp/bin/protoc
	chmod +x $(PROTOC_DIR).tmp/bin/protoc
	rm -rf $(PROTOC_DIR) && mv $(PROTOC_DIR).tmp $(PROTOC_DIR)
	$(GEN_BIN)/protoc --version

# `make image` writes $(IMAGE_DIR)/Image, initramfs.cpio.gz and SHA256SUMS:
# the same sources and kernel give the same bytes. It always rebuilds /init
# and the initramfs (a few seconds, cached by go); the kernel is fetched once.
image: $(KERNEL_DEB)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' \
		-o build/init-arm64 ./fixtures/image/init
	$(GO) run ./fixtures/image/cmd/mkimage --kernel-tree $(KERNEL_DIR)/root --kernel-deb $(KERNEL_DEB) \
		--init build/init-arm64 --out $(IMAGE_DIR)

$(KERNEL_DEB):
	rm -rf $(KERNEL_DIR).tmp
	mkdir -p $(KERNEL_DIR).tmp/apt/lists/partial $(KERNEL_DIR).tmp/apt/cache/archives/partial $(KERNEL_DIR).tmp/deb
	: > $(KERNEL_DIR).tmp/apt/status
	printf '%s\n' 'APT::Architecture "arm64";' 'APT::Architectures {"arm64";};' \
		'Dir::State::Lists "$(KERNEL_DIR).tmp/apt/lists";' 'Dir::State::status "$(KERNEL_DIR).tmp/apt/status";' \
		'Dir::Cache "$(KERNEL_DIR).tmp/apt/cache";' > $(KERNEL_DIR).tmp/apt/apt.conf
	$(KERNEL_APT) apt-get -q update
	cd $(KERNEL_DIR).tmp/deb && $(KERNEL_APT) apt-get -q download $(KERNEL_PKG)=$(KERNEL_VERSION) \
		&& sha256sum --strict -c $(CURDIR)/tools/kernel-arm64.sha256
	dpkg-deb -x $(KERNEL_DIR).tmp/deb/$(notdir $(KERNEL_DEB)) $(KERNEL_DIR).tmp/root
	rm -rf $(KERNEL_DIR).tmp/apt
	rm -rf $(KERNEL_DIR) && mv $(KERNEL_DIR).tmp $(KERNEL_DIR)

qemu:
	@if [ "$$(dpkg-query -W -f '$${Version}' qemu-system-arm 2>/dev/null)" != "$(QEMU_VERSION)" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-arm=$(QEMU_VERSION); \
	fi
	qemu-system-aarch64 --version | head -1
