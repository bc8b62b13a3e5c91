# systemd262.mk: the Debian forky chroot with the real systemd 262 that the
# differential tests (test/systemd262) and confext benchmarks (bench/) use.

SYSTEMD262_ROOT ?= $(CACHE)/systemd262-root

.PHONY: systemd262-root bench-confext

# systemd262-root is idempotent: a complete chroot is left alone.
systemd262-root:
	EXT_SETUP_ROOT_CACHE=$(CACHE) scripts/prepare-systemd262.sh

TEST_PREREQS += systemd262-root
