# qemu.mk: QEMU boot tests (test/qemu, docs/qemu.md).
#
# qemu-prepare fetches the Debian forky kernel and a minimal forky root into
# $(CACHE)/qemu (idempotent: a no-op when already complete); qemu-test boots
# the scenarios. make test runs qemu-prepare first and the QEMU tests as part
# of go test ./... (they skip, or fail under EXT_SETUP_ROOT_REQUIRE_ALL=1,
# without the prepared inputs).

.PHONY: qemu-prepare qemu-test qemu-prepare-arm64 qemu-test-arm64

qemu-prepare:
	EXT_SETUP_ROOT_CACHE=$(CACHE) scripts/prepare-qemu.sh

qemu-test: build qemu-prepare qemu-prepare-uefi
	EXT_SETUP_ROOT_CACHE=$(CACHE) $(GO) test -count=1 -v -timeout 60m ./test/qemu/

TEST_PREREQS += qemu-prepare

# qemu-prepare-uefi adds what the measured boots (TestQEMUMeasuredBoot,
# docs/measure.md) need beside the QEMU inputs: a copy of the forky root
# with systemd-tpm, libtss2, ukify and systemd-stub (rootfs-uefi) and the
# kernel with its EFI stub (kernel-uefi). Idempotent.
.PHONY: qemu-prepare-uefi
qemu-prepare-uefi: qemu-prepare
	EXT_SETUP_ROOT_CACHE=$(CACHE) scripts/prepare-uefi.sh

TEST_PREREQS += qemu-prepare-uefi

# qemu-prepare-arm64 fetches Debian's arm64 kernel and bootstraps the forky
# root for arm64 (qemu-user through binfmt_misc) into $(CACHE)/qemu-arm64;
# qemu-test-arm64 boots the arm64 scenario (qemu-system-aarch64, TCG). It is
# opt-in: make test runs it only with EXT_SETUP_ROOT_QEMU_ARM64=1 (it then
# prepares the arm64 inputs too), make test-long always (docs/qemu.md,
# "arm64").
qemu-prepare-arm64: systemd262-root
	EXT_SETUP_ROOT_CACHE=$(CACHE) EXT_SETUP_ROOT_QEMU_ARCH=arm64 nice -n 10 scripts/prepare-qemu.sh

QEMU_ARM64_TEST = $(TEST_ENV) EXT_SETUP_ROOT_QEMU_ARM64=1 $(GO) test -count=1 -v -timeout 120m -run '^TestQEMUArm64$$' ./test/qemu/

qemu-test-arm64: build qemu-prepare-arm64
	$(QEMU_ARM64_TEST)

# The arm64 boot adds about half an hour under load to the QEMU suite.
ifeq ($(EXT_SETUP_ROOT_QEMU_ARM64),1)
TEST_PREREQS += qemu-prepare-arm64
export EXT_SETUP_ROOT_QEMU_ARM64
QEMU_TEST_TIMEOUT := 120m
endif

# test-long runs what is too slow for every make test. A double-colon
# rule: each fragment adds its own long run as another test-long:: rule.
.PHONY: test-long
test-long:: build qemu-prepare-arm64
	$(QEMU_ARM64_TEST)

# The measured boot of the dracut UKI (TestQEMUMeasuredBoot): make test
# proves the same on the mkosi image (TestQEMUMkosiMeasured).
test-long:: build qemu-prepare qemu-prepare-uefi
	$(TEST_ENV) EXT_SETUP_ROOT_QEMU_LONG=1 $(GO) test -count=1 -v -timeout 60m -run '^TestQEMUMeasuredBoot$$' ./test/qemu/
