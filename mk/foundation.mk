# foundation.mk: benchmarks of the mount and rootfs primitives (root; they
# mount tmpfs, overlays and loop devices in a private mount namespace).
# Results go to out/bench-foundation.txt.

.PHONY: bench-foundation

bench-foundation:
	mkdir -p out
	$(GO) test -run '^$$' -bench . -benchtime 2s ./mount ./rootfs | tee out/bench-foundation.txt

BENCH_TARGETS += bench-foundation
