#!/bin/bash
# prepare-qemu.sh fetches the inputs of the QEMU boot tests (test/qemu) from the
# Debian archive into $EXT_SETUP_ROOT_CACHE/qemu (default
# /var/cache/ext-setup-root/qemu):
#
#   kernel/vmlinux          uncompressed forky kernel (PVH entry, no decompressor under TCG)
#   kernel/modules/VER/...  its modules (as shipped, .ko.xz) with modules.dep
#   kernel/version          the kernel release string
#   rootfs/                 minimal forky root: systemd 262, udev, dracut, kmod,
#                           squashfs-tools, erofs-utils, e2fsprogs (no kernel package)
#   manifest.txt            package versions of everything above
#
# It never touches the host's apt configuration: the kernel packages are fetched
# with a private apt config/state dir, the rootfs with mmdebstrap. Every piece
# is built in a temporary directory and renamed into place when complete, so a
# rerun after an interruption restarts only the unfinished piece, and a rerun
# after success does nothing (idempotent). Set EXT_SETUP_ROOT_QEMU_REFRESH=1 to
# rebuild everything.
set -euo pipefail

CACHE=${EXT_SETUP_ROOT_CACHE:-/var/cache/ext-setup-root}/qemu
MIRROR=${EXT_SETUP_ROOT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${EXT_SETUP_ROOT_DEBIAN_SUITE:-forky}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
start=$(date +%s)

log() { printf 'prepare-qemu: %s\n' "$*" >&2; }

need() {
	local missing=()
	for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
	if [ ${#missing[@]} -gt 0 ]; then
		log "missing host tools: ${missing[*]} (run scripts/ci-deps.sh)"
		exit 1
	fi
}
need mmdebstrap apt-get dpkg-deb zstd depmod

if [ "${EXT_SETUP_ROOT_QEMU_REFRESH:-0}" = 1 ]; then
	log "refresh requested: removing $CACHE"
	rm -rf "$CACHE"
fi
mkdir -p "$CACHE"
cd "$CACHE"

# --- private apt state for forky (kernel packages) ---------------------------
APTDIR=$CACHE/apt
mkdir -p "$APTDIR"/{lists/partial,cache/archives/partial,etc/apt.conf.d,etc/preferences.d}
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$APTDIR/sources.list"
cat >"$APTDIR/apt.conf" <<EOF
Dir::Etc::sourcelist "$APTDIR/sources.list";
Dir::Etc::sourceparts "/nonexistent";
Dir::Etc::parts "$APTDIR/etc/apt.conf.d";
Dir::Etc::preferencesparts "$APTDIR/etc/preferences.d";
Dir::State "$APTDIR/state";
Dir::State::Lists "$APTDIR/lists";
Dir::State::status "$APTDIR/state/status";
Dir::Cache "$APTDIR/cache";
Acquire::Check-Valid-Until "false";
APT::Architecture "amd64";
APT::Architectures "amd64";
APT::Sandbox::User "root";
EOF
mkdir -p "$APTDIR/state"
touch "$APTDIR/state/status"
export APT_CONFIG=$APTDIR/apt.conf

# --- kernel --------------------------------------------------------------------
fetch_kernel() {
	log "apt-get update (private state in $APTDIR)"
	apt-get -qq update
	local img bin mods
	img=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
	[ -n "$img" ] || { log "cannot resolve linux-image-amd64"; exit 1; }
	local kver=${img#linux-image-}
	# forky splits the image package: a meta package depending on
	# linux-binary-*, linux-modules-* (bookworm/trixie: all in linux-image-*).
	local pkgs=()
	for p in "linux-binary-$kver" "linux-modules-$kver"; do
		apt-cache show "$p" >/dev/null 2>&1 && pkgs+=("$p")
	done
	[ ${#pkgs[@]} -gt 0 ] || pkgs=("$img")
	log "kernel $kver: downloading ${pkgs[*]}"
	rm -rf kernel.tmp && mkdir -p kernel.tmp/debs kernel.tmp/x
	(cd kernel.tmp/debs && apt-get -qq download "${pkgs[@]}")
	for d in kernel.tmp/debs/*.deb; do
		dpkg-deb -x "$d" kernel.tmp/x
		dpkg-deb -W --showformat='${Package} ${Version}\n' "$d" >>kernel.tmp/manifest.txt
	done
	local mdir=kernel.tmp/x/usr/lib/modules/$kver
	[ -d "$mdir" ] || mdir=kernel.tmp/x/lib/modules/$kver
	local vmlinuz=$mdir/vmlinuz
	[ -f "$vmlinuz" ] || vmlinuz=kernel.tmp/x/boot/vmlinuz-$kver
	# Extract the uncompressed ELF vmlinux: find the zstd frame magic in the
	# bzImage and decompress from there (zstd stops at the frame end and
	# ignores the trailing data with a warning).
	local off
	off=$(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$vmlinuz" | head -1 | cut -d: -f1)
	[ -n "$off" ] || { log "no zstd payload in $vmlinuz"; exit 1; }
	tail -c +$((off + 1)) "$vmlinuz" | zstd -dcq 2>/dev/null >kernel.tmp/vmlinux || true
	head -c 4 kernel.tmp/vmlinux | grep -q $'\x7fELF' || { log "vmlinux extraction failed"; exit 1; }
	mkdir -p kernel.tmp/modules
	mv "$mdir" "kernel.tmp/modules/$kver"
	rm -f "kernel.tmp/modules/$kver/vmlinuz"
	# depmod -b expects <base>/lib/modules; run it on a symlinked layout.
	mkdir -p kernel.tmp/depmod/lib
	ln -sfn ../../modules kernel.tmp/depmod/lib/modules
	depmod -b kernel.tmp/depmod "$kver" 2>/dev/null
	rm -rf kernel.tmp/depmod
	echo "$kver" >kernel.tmp/version
	rm -rf kernel.tmp/debs kernel.tmp/x
	rm -rf kernel && mv kernel.tmp kernel
	# The package lists are only needed to fetch; drop them (about 190 MB).
	rm -rf "$APTDIR"/lists/* "$APTDIR"/cache/*.bin
	log "kernel ready: $(du -sh kernel | cut -f1)"
}

# --- rootfs ----------------------------------------------------------------------
# Packages added to the rootfs after its first recipe: libcryptsetup12, which
# systemd-confext/-sysext 262 dlopen to set up dm-verity images (the signed
# default confext of the verity scenarios), and systemd-cryptsetup, which
# dracut's systemd-veritysetup module (a dependency of its systemd-sysext
# module, the systemd-confext-sysroot.service comparison) requires. A cached
# rootfs that lacks them gets them with apt inside it (ensure_rootfs_added).
ROOTFS_ADDED="libcryptsetup12 systemd-cryptsetup"
ROOTFS_ADDED_COMMA=${ROOTFS_ADDED// /,}

ensure_rootfs_added() {
	local missing=() p
	for p in $ROOTFS_ADDED; do
		chroot rootfs dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	log "adding ${missing[*]} to the cached rootfs"
	# The rootfs's own sources.list (mmdebstrap wrote it for $MIRROR).
	env -u APT_CONFIG chroot rootfs apt-get -qq -o Acquire::Check-Valid-Until=false update >&2
	env -u APT_CONFIG DEBIAN_FRONTEND=noninteractive chroot rootfs apt-get -qq -y --no-install-recommends \
		-o Dpkg::Options::=--path-exclude=/usr/share/man/* -o Dpkg::Options::=--path-exclude=/usr/share/doc/* \
		install "${missing[@]}" >&2
	rm -rf rootfs/var/cache/apt/* rootfs/var/lib/apt/lists/*
	chroot rootfs dpkg-query -W -f='${Package} ${Version}\n' >rootfs.manifest.tmp
	mv rootfs.manifest.tmp rootfs.manifest
}

fetch_rootfs() {
	log "mmdebstrap $SUITE rootfs"
	rm -rf rootfs.tmp
	# path-exclude keeps docs, man pages and locales out (size); the rootfs is
	# only a source for the test OS image and for building initramfs images.
	mmdebstrap --variant=minbase --quiet \
		--aptopt='Acquire::Check-Valid-Until "false"' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/lintian/*' \
		--dpkgopt='path-exclude=/usr/lib/firmware/*' \
		--include=systemd,systemd-sysv,udev,dracut,kmod,squashfs-tools,erofs-utils,e2fsprogs,zstd,$ROOTFS_ADDED_COMMA \
		--customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" >"$1/.manifest"' \
		--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
		"$SUITE" rootfs.tmp "$MIRROR"
	mv rootfs.tmp/.manifest rootfs.manifest.tmp
	rm -rf rootfs && mv rootfs.tmp rootfs
	mv rootfs.manifest.tmp rootfs.manifest
	log "rootfs ready: $(du -sh rootfs | cut -f1)"
}

[ -f kernel/version ] && [ -f kernel/vmlinux ] || fetch_kernel &
kpid=$!
[ -x rootfs/usr/bin/dracut ] && [ -f rootfs.manifest ] || fetch_rootfs &
rpid=$!
rc=0
wait $kpid || rc=$?
wait $rpid || rc=$?
[ $rc = 0 ] || { log "failed (rc $rc)"; exit $rc; }
ensure_rootfs_added

{
	echo "# QEMU test inputs prepared by scripts/prepare-qemu.sh from $MIRROR $SUITE"
	echo "kernel $(cat kernel/version)"
	sed 's/^/kernel-pkg /' kernel/manifest.txt
	grep -E '^(systemd|udev|dracut|kmod|squashfs-tools|erofs-utils|e2fsprogs|libc6) ' rootfs.manifest | sed 's/^/rootfs-pkg /'
} >manifest.txt.tmp
mv manifest.txt.tmp manifest.txt
log "done in $(($(date +%s) - start)) s: $CACHE ($(du -sh "$CACHE" --exclude=apt | cut -f1))"
