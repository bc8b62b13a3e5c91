# powercut.mk: power cuts in QEMU (test/qemu/powercut*.go, docs/powercut.md).
# make test runs TestQEMUPowerCut, a sample of 4 cuts, with the other QEMU
# tests. make soak runs SOAK_CUTS cuts (default 57: every point of the
# catalogue three times, random delays) and writes the results table to
# out/powercut-soak.md. SOAK_POINTS (comma-separated names, e.g.
# fetch-extract,fetch-place) limits the cuts to those points. Each cut
# costs three boots; set EXT_SETUP_ROOT_POWERCUT_SEED to repeat a run's
# delays.
#
# Disk model (b) (dm-log-writes, test/qemu/powercut_dmlog*.go): make test
# runs TestQEMUPowerCutLogWrites (e2fsck at every flush of the initrd
# stages, 2 replayed disks booted). make soak-dmlog checks every flush from
# the pre stage to the end of the log with e2fsck and boots
# SOAK_REPLAYS replayed disks (default 16, two boots each), table in
# out/powercut-dmlog-soak.md. make soak stays model (a) only.

SOAK_CUTS ?= 57
SOAK_POINTS ?=
SOAK_REPLAYS ?= 16

.PHONY: soak soak-dmlog

soak-dmlog: build qemu-prepare
	EXT_SETUP_ROOT_CACHE=$(CACHE) EXT_SETUP_ROOT_DMLOG_SOAK=$(SOAK_REPLAYS) \
		$(GO) test -count=1 -v -timeout 600m -run 'TestQEMUPowerCutLogWritesSoak$$' ./test/qemu/

soak: build qemu-prepare
	EXT_SETUP_ROOT_CACHE=$(CACHE) EXT_SETUP_ROOT_POWERCUT_SOAK=$(SOAK_CUTS) \
		EXT_SETUP_ROOT_POWERCUT_POINTS=$(SOAK_POINTS) \
		$(GO) test -count=1 -v -timeout 600m -run 'TestQEMUPowerCutSoak$$' ./test/qemu/
