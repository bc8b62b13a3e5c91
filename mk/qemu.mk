# qemu.mk: QEMU boot tests (test/qemu, docs/qemu.md).
#
# qemu-prepare fetches the Debian forky kernel and a minimal forky root into
# $(CACHE)/qemu (idempotent: a no-op when already complete); qemu-test boots
# the scenarios. make test runs qemu-prepare first and the QEMU tests as part
# of go test ./... (they skip, or fail under EXT_SETUP_ROOT_REQUIRE_ALL=1,
# without the prepared inputs).

.PHONY: qemu-prepare qemu-test

qemu-prepare:
	EXT_SETUP_ROOT_CACHE=$(CACHE) scripts/prepare-qemu.sh

qemu-test: build qemu-prepare
	EXT_SETUP_ROOT_CACHE=$(CACHE) $(GO) test -count=1 -v -timeout 60m ./test/qemu/

TEST_PREREQS += qemu-prepare
