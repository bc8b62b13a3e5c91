#!/bin/bash
# prepare-uefi.sh prepares the inputs of the measured QEMU boots
# (test/qemu/uefi.go, TestQEMUMeasuredBoot) in $EXT_SETUP_ROOT_CACHE/qemu,
# next to what scripts/prepare-qemu.sh fetched (run that first):
#
#   rootfs-uefi/            a copy of rootfs/ (forky, systemd 262) plus the
#                           TPM pieces and the UKI builder: systemd-tpm
#                           (systemd-pcrextend, systemd-tpm2-setup, the
#                           verity.nvpcr definition), the libtss2 libraries,
#                           tpm2-tools (dracut's tpm2-tss module needs it),
#                           systemd-ukify, systemd-boot-efi (the stub) and
#                           python3-cryptography (ukify's PCR signing)
#   rootfs-uefi.manifest    its package versions
#   kernel-uefi/vmlinuz     the compressed forky kernel (bzImage with the EFI
#                           stub) of kernel/version: a UKI needs it, the
#                           other QEMU boots use kernel/vmlinux
#   kernel-uefi/version     its release
#
# The cached rootfs/ is left as it is (the other QEMU tests hash its
# manifest into their image caches). Each piece is built in a temporary
# directory and renamed into place when complete; a complete piece is left
# alone (idempotent). Packages come from the Debian mirror the rootfs was
# bootstrapped from (its own sources.list, from the machine's apt
# configuration). OVMF and swtpm are host packages (scripts/ci-deps.sh).
set -euo pipefail

BASE=${EXT_SETUP_ROOT_CACHE:-/var/cache/ext-setup-root}
CACHE=$BASE/qemu
PKGS="systemd-tpm libtss2-tcti-device0t64 tpm2-tools systemd-ukify systemd-boot-efi python3-cryptography"

log() { printf 'prepare-uefi: %s\n' "$*" >&2; }

if [ ! -x "$CACHE/rootfs/usr/bin/dracut" ] || [ ! -f "$CACHE/kernel/version" ]; then
	log "no QEMU inputs in $CACHE (run make qemu-prepare first)"
	exit 1
fi
exec 9>"$BASE/.prepare.lock"
flock 9
cd "$CACHE"
start=$(date +%s)

# apt_in ROOT ARGS... runs apt-get in the chroot ROOT; its chatter goes to
# a log that is shown only when it fails.
apt_in() {
	local out rc=0
	out=$(mktemp)
	env -u APT_CONFIG DEBIAN_FRONTEND=noninteractive chroot "$1" apt-get -qq -y -o Acquire::Check-Valid-Until=false \
		-o Dpkg::Options::=--path-exclude=/usr/share/man/* -o Dpkg::Options::=--path-exclude=/usr/share/doc/* "${@:2}" >"$out" 2>&1 || rc=$?
	[ $rc = 0 ] || { cat "$out" >&2; log "apt-get ${*:2} in $1 failed (rc $rc)"; }
	rm -f "$out"
	return $rc
}

if [ ! -f rootfs-uefi.manifest ] || [ ! -x rootfs-uefi/usr/bin/ukify ]; then
	log "rootfs-uefi: copy of rootfs plus $PKGS"
	rm -rf rootfs-uefi.tmp
	cp -a rootfs rootfs-uefi.tmp
	apt_in rootfs-uefi.tmp update
	# shellcheck disable=SC2086
	apt_in rootfs-uefi.tmp install --no-install-recommends $PKGS
	rm -rf rootfs-uefi.tmp/var/cache/apt/* rootfs-uefi.tmp/var/lib/apt/lists/*
	chroot rootfs-uefi.tmp dpkg-query -W -f='${Package} ${Version}\n' >rootfs-uefi.manifest.tmp
	rm -rf rootfs-uefi && mv rootfs-uefi.tmp rootfs-uefi
	mv rootfs-uefi.manifest.tmp rootfs-uefi.manifest
fi

kver=$(cat kernel/version)
if [ ! -f kernel-uefi/vmlinuz ] || [ "$(cat kernel-uefi/version 2>/dev/null)" != "$kver" ]; then
	log "kernel-uefi: vmlinuz of $kver"
	rm -rf kernel-uefi.tmp && mkdir -p kernel-uefi.tmp
	apt_in rootfs-uefi update
	# The package holding the image: linux-binary-* on forky (split
	# packages), linux-image-* before.
	pkg=linux-binary-$kver
	chroot rootfs-uefi apt-cache show "$pkg" >/dev/null 2>&1 || pkg=linux-image-$kver
	env -u APT_CONFIG chroot rootfs-uefi sh -c "cd /tmp && apt-get -qq -o Acquire::Check-Valid-Until=false download $pkg" >&2
	deb=$(find rootfs-uefi/tmp -maxdepth 1 -name "${pkg}_*.deb" | head -1)
	if [ -z "$deb" ]; then
		log "cannot download $pkg (the mirror moved on? rerun prepare-qemu with EXT_SETUP_ROOT_QEMU_REFRESH=1)"
		exit 1
	fi
	dpkg-deb -x "$deb" kernel-uefi.tmp/x
	rm -f "$deb"
	rm -rf rootfs-uefi/var/cache/apt/* rootfs-uefi/var/lib/apt/lists/*
	img=$(find kernel-uefi.tmp/x -name vmlinuz -o -name "vmlinuz-$kver" | head -1)
	[ -n "$img" ] || { log "no vmlinuz in $pkg"; exit 1; }
	mv "$img" kernel-uefi.tmp/vmlinuz
	rm -rf kernel-uefi.tmp/x
	echo "$kver" >kernel-uefi.tmp/version
	rm -rf kernel-uefi && mv kernel-uefi.tmp kernel-uefi
fi
log "done in $(($(date +%s) - start)) s"
