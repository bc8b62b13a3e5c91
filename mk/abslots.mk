# abslots.mk: A/B image selection (issue 3).
# bench-links times `ext-setup-root links` against Flatcar's bash
# initrd-setup-root-after-ignition on the same fixture (root, hyperfine) and
# writes the table to out/bench-links.md. The reference script is found via
# EXT_SETUP_ROOT_BOOTENGINE_DIR (default ../shared/reference/flatcar-bootengine).

.PHONY: bench-links

bench-links: build
	bench/links.sh $(BIN) out/bench-links.md

BENCH_TARGETS += bench-links
