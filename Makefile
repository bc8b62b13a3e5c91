# ext-setup-root build, test and benchmark entry points.
# Fragments in mk/*.mk add prerequisites (TEST_PREREQS), benchmarks
# (BENCH_TARGETS) and install steps (INSTALL_TARGETS).

# go from $PATH, else the official tarball's place: `sudo make` resets PATH
# to secure_path, which does not hold /usr/local/go/bin.
GO          ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go),go)
BIN         := bin/ext-setup-root
VERSION     ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# nethttpomithttp2 leaves net/http's bundled HTTP/2 out of the binary (the
# image download speaks HTTP/1.1 only; 0.37 MiB less).
GOFLAGS_BIN := -trimpath -tags nethttpomithttp2 -ldflags '-s -w -X main.version=$(VERSION)'
CACHE       ?= $(or $(EXT_SETUP_ROOT_CACHE),/var/cache/ext-setup-root)
DESTDIR     ?=
PREFIX      ?= /usr

TEST_PREREQS    :=
BENCH_TARGETS   :=
INSTALL_TARGETS :=

.PHONY: all demo build build-testhooks test unit-test vet deps demo bench install clean

all: build

include $(sort $(wildcard mk/*.mk))

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BIN) -o $(BIN) ./cmd/ext-setup-root

# build-testhooks builds the binary for the crash and fault-injection
# tests: the same code with the fault hooks armed by environment variables
# (-tags testhooks, internal/fault). The production binary ignores them.
TESTHOOKS_BIN := bin/ext-setup-root-testhooks
build-testhooks:
	CGO_ENABLED=0 $(GO) build -trimpath -tags testhooks -o $(TESTHOOKS_BIN) ./cmd/ext-setup-root

deps:
	scripts/ci-deps.sh
	$(GO) mod download

vet:
	$(GO) vet ./...
	$(GO) vet -tags testhooks ./cmd/... ./internal/fault/
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# test runs every tier: unit tests, root tests (private mount namespace),
# differential tests against systemd 262 and QEMU boot tests.
# The QEMU boot tests run last, on their own and verbosely, so that their
# boot times are printed and they do not compete for the 2 CPUs with the
# root tests.
QEMU_TEST_TIMEOUT ?= 60m
TEST_ENV := EXT_SETUP_ROOT_CACHE=$(CACHE) EXT_SETUP_ROOT_BIN=$(CURDIR)/$(BIN) \
	EXT_SETUP_ROOT_TESTHOOKS_BIN=$(CURDIR)/$(TESTHOOKS_BIN)
test: deps build build-testhooks vet $(TEST_PREREQS)
	$(TEST_ENV) $(GO) test -count=1 -timeout 40m $$($(GO) list ./... | grep -v '/test/qemu$$')
	GO=$(GO) FUZZTIME=$(FUZZTIME_TEST) OUT=out/fuzz-short.md scripts/fuzz.sh
	$(TEST_ENV) $(GO) test -count=1 -v -timeout $(QEMU_TEST_TIMEOUT) ./test/qemu/

# unit-test runs only what needs neither root nor prepared inputs.
unit-test:
	$(GO) test -count=1 -short ./...

bench: build $(BENCH_TARGETS)

install: build $(INSTALL_TARGETS)
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ext-setup-root

clean:
	rm -rf bin out

# demo runs both initrd stages on built-in demo data in a private mount
# namespace. It is meant as the first command on a fresh machine: it
# installs squashfs-tools if it can (root and apt), and without it the demo
# still works with ext4 images (scripts/demo.sh).
demo: build
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then scripts/ci-deps.sh --demo || echo "demo: could not install squashfs-tools; using ext4 images"; fi
	BIN=$(BIN) scripts/demo.sh

# fuzz runs every go test -fuzz target for FUZZTIME each (scripts/fuzz.sh,
# table in out/fuzz.md); make test runs a short pass (FUZZTIME_TEST each).
# It also runs the prepare step's property test (boot/
# prepare_property_root_test.go, 200 cases in make test) on PROPERTY_CASES
# more generated cases from PROPERTY_SEED (as root).
FUZZTIME      ?= 60s
FUZZTIME_TEST ?= 3s
PROPERTY_CASES ?= 5000
PROPERTY_SEED  ?= 1000
.PHONY: fuzz
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh
	EXT_SETUP_ROOT_PROPERTY_CASES=$(PROPERTY_CASES) EXT_SETUP_ROOT_PROPERTY_SEED=$(PROPERTY_SEED) \
		$(GO) test -count=1 -timeout 60m -run '^TestPrepareInvariantProperty$$' ./boot/
