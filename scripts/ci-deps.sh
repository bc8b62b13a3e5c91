#!/bin/bash
# ci-deps.sh installs the host packages that make test needs, if missing.
# It never changes the host's apt sources; Debian forky content is fetched
# by the prepare scripts into their own cache directories.
# With --demo it installs only what make demo needs (squashfs-tools for
# the images; util-linux and e2fsprogs are part of every Debian system).
set -euo pipefail
if [ "${1:-}" = --demo ]; then
	pkgs=(squashfs-tools util-linux e2fsprogs)
else
pkgs=(qemu-system-x86 cpio mmdebstrap debootstrap e2fsprogs squashfs-tools erofs-utils zstd kmod
      gdisk fdisk dosfstools attr acl xz-utils hyperfine
      make systemd   # make: units tests run `make install`; systemd: systemctl --root in units tests
      time           # time: GNU /usr/bin/time for peak RSS in make bench (bench/confext)
      qemu-system-arm arch-test  # the arm64 boot (qemu-system-aarch64; mmdebstrap --arch=arm64 needs arch-test)
      ovmf mtools                # UEFI boots (mkosi image, measured boots): firmware; mcopy writes the ESP
      swtpm swtpm-tools)         # the measured boots: a software TPM 2.0 per boot
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "ci-deps: installing ${missing[*]}"
	apt-get update -qq -o Acquire::Check-Valid-Until=false
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
