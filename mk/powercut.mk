# powercut.mk: power cuts in QEMU (test/qemu/powercut*.go, docs/powercut.md).
# make test runs TestQEMUPowerCut, a sample of 4 cuts, with the other QEMU
# tests. make soak runs SOAK_CUTS cuts (default 48: every point of the
# catalogue three times, random delays) and writes the results table to
# out/powercut-soak.md. Each cut costs three boots; set
# EXT_SETUP_ROOT_POWERCUT_SEED to repeat a run's delays.

SOAK_CUTS ?= 48

.PHONY: soak

soak: build qemu-prepare
	EXT_SETUP_ROOT_CACHE=$(CACHE) EXT_SETUP_ROOT_POWERCUT_SOAK=$(SOAK_CUTS) \
		$(GO) test -count=1 -v -timeout 600m -run 'TestQEMUPowerCutSoak$$' ./test/qemu/
