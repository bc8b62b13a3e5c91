# systemd262.mk: the Debian forky chroot with the real systemd 262 that the
# differential tests (test/systemd262) and confext benchmarks (bench/) use.

.PHONY: systemd262-root bench-confext

# systemd262-root is idempotent: a complete chroot is left alone.
systemd262-root:
	EXT_SETUP_ROOT_CACHE=$(CACHE) scripts/prepare-systemd262.sh

TEST_PREREQS += systemd262-root

# bench-confext: ours vs systemd-confext 262 (merge 1/8/64, unchanged
# refresh, peak RSS, binary size, /etc window); table in out/bench-confext.md.
# BENCH_CONFEXT_FLAGS passes options (e.g. -runs=3 -window-systemd=50).
bench-confext: build systemd262-root
	$(GO) run ./bench/confext -bin $(BIN) -out out/bench-confext.md $(BENCH_CONFEXT_FLAGS)

BENCH_TARGETS += bench-confext

# bench-scale: merge and unchanged refresh of 1 to 128 confexts, ours vs
# systemd-confext 262, as a table (out/bench-scale.md) and a plot drawn by
# the Go code (out/bench-scale.svg; the README shows the copy in docs/).
BENCH_SCALE_FLAGS ?= -runs=3
bench-scale: build systemd262-root
	$(GO) run ./bench/confext -bin $(BIN) -scale 1,2,4,8,16,32,64,128 $(BENCH_SCALE_FLAGS)

.PHONY: bench-scale
BENCH_TARGETS += bench-scale
