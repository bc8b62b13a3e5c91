# prepare.mk: the pre stage's prepare step (issue 9, docs/prepare.md).
# bench-prepare times it against Flatcar's bash initrd-setup-root on an /etc
# of 2,000 entries, half identical to the vendor defaults (root, hyperfine),
# and writes the table to out/bench-prepare.md. The reference script is found
# via EXT_SETUP_ROOT_BOOTENGINE_DIR (default ../shared/reference/flatcar-bootengine).

.PHONY: bench-prepare

bench-prepare: build
	bench/prepare.sh $(BIN) out/bench-prepare.md

BENCH_TARGETS += bench-prepare
