# mkosi.mk: the mkosi example image (examples/mkosi, docs/initrd.md "mkosi").
#
# mkosi-tools bootstraps the Debian forky chroot that runs mkosi 27 and
# systemd 262's image tools (the host's Debian 12 versions are too old);
# mkosi-image builds the example, with the QEMU test's reporter (profile
# "test"), into $(CACHE)/mkosi. Both are idempotent: a complete chroot is
# left alone, and an image whose inputs hash matches its manifest is a
# cache hit. make test builds it before the QEMU tests, which boot it
# (TestQEMUMkosiMeasured) with OVMF and swtpm.

.PHONY: mkosi-tools mkosi-image

mkosi-tools:
	EXT_SETUP_ROOT_CACHE=$(CACHE) scripts/prepare-mkosi-tools.sh

mkosi-image: build mkosi-tools
	EXT_SETUP_ROOT_CACHE=$(CACHE) GO=$(GO) scripts/build-mkosi-image.sh

TEST_PREREQS += mkosi-image
