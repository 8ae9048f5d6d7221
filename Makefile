# opsvc — see README.md. Everything here needs only Go; `make bench-deps`
# installs the peer supervisors for the side-by-side benchmark.
GO      ?= go
BIN     := bin/opsvc
RUNDIR  := $(CURDIR)/.run
export CGO_ENABLED = 0

.PHONY: all build run test test-windows dist lint vet fmt-check staticcheck cross fuzz fuzz-short faults faults-short bench bench-go bench-deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/opsvc

# Runs the daemon in the foreground on the bundled example units, with its
# state, control socket and a copy of contrib/opsvc.toml in ./.run (ignored by
# git): saved settings are written there, never to the tracked file. Ctrl-C stops it.
run: build
	@mkdir -p $(RUNDIR)
	@echo "opsvc: in another terminal:  ./$(BIN) --socket $(RUNDIR)/opsvc.sock status"
	@echo "opsvc: or:                   export OPSVC_SOCKET=$(RUNDIR)/opsvc.sock; ./$(BIN) events -f"
	@echo "opsvc: web console:          ./$(BIN) --state $(RUNDIR)/state console   (prints the login link)"
	@[ -e $(RUNDIR)/opsvc.toml ] || cp contrib/opsvc.toml $(RUNDIR)/opsvc.toml
	exec ./$(BIN) daemon --units contrib/examples --state $(RUNDIR)/state --socket $(RUNDIR)/opsvc.sock --config $(RUNDIR)/opsvc.toml

test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	$(MAKE) --no-print-directory fuzz-short
	$(MAKE) --no-print-directory faults-short
	@if command -v wine64 >/dev/null 2>&1 || [ -x /usr/lib/wine/wine64 ]; then \
		$(MAKE) --no-print-directory test-windows; \
	else \
		echo "make test: SKIP test-windows: wine64 is not installed (Debian: apt-get install wine64 gcc-mingw-w64-x86-64)"; \
	fi

# The Windows test binaries of the packages listed in contrib/windows/test.sh,
# run under wine (wine64 and gcc-mingw-w64-x86-64; the wine prefix is kept in .run/wine).
test-windows:
	GO=$(GO) ./contrib/windows/test.sh

# Release archives for linux/amd64, linux/arm64, darwin/arm64, freebsd/amd64 and
# windows/amd64 (a zip) in dist/, with SHA256SUMS; VERSION=X overrides the version.
dist:
	GO=$(GO) ./contrib/dist.sh

# Every fuzz target for a few seconds (make test) or a minute each (make fuzz).
fuzz-short:
	FUZZTIME=3s GO=$(GO) ./contrib/fuzz.sh

fuzz:
	FUZZTIME=$${FUZZTIME:-60s} GO=$(GO) ./contrib/fuzz.sh

# The fault suite (contrib/faults, see RELIABILITY.md): the built daemon under kill -9, floods,
# hostile files, a full disk. One table line per scenario; fails if anything did not hold.
# Needs Linux; run as root for the disk-full scenario (it mounts a small tmpfs).
# FAULTS_FLAGS passes more flags, e.g. FAULTS_FLAGS='-run disk-full -keep'.
faults: build
	$(GO) build -o bin/faults ./contrib/faults
	./bin/faults -bin $(BIN) $(FAULTS_FLAGS)

faults-short: build
	$(GO) build -o bin/faults ./contrib/faults
	./bin/faults -bin $(BIN) -short $(FAULTS_FLAGS)

lint: vet fmt-check staticcheck cross

# staticcheck from PATH or GOPATH/bin; installed (this pinned version, through the Go module
# proxy) when missing, so that make test needs only Go.
STATICCHECK_VERSION := v0.8.2
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $$($(GO) env GOPATH)/bin/staticcheck)
staticcheck:
	@[ -x "$(STATICCHECK)" ] || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK) ./...

# Every package builds, vets and passes staticcheck for each platform opsvc is built for.
CROSS_OS := linux darwin freebsd windows
cross: staticcheck
	@for os in $(CROSS_OS); do \
		echo "GOOS=$$os go build ./... && go vet ./... && staticcheck ./..."; \
		GOOS=$$os $(GO) build ./... && GOOS=$$os $(GO) vet ./... && GOOS=$$os $(STATICCHECK) ./... || exit 1; \
	done

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./... | tee .run-bench-go.txt
	./contrib/bench/run.sh

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-deps:
	./contrib/bench/deps.sh

clean:
	rm -rf bin .run dist
