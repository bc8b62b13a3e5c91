#!/bin/bash
# prepare-qemu.sh fetches the inputs of the QEMU boot tests (test/qemu) from the
# Debian archive into $EXT_SETUP_ROOT_CACHE/qemu (default
# /var/cache/ext-setup-root/qemu):
#
#   kernel/vmlinux          uncompressed forky kernel (PVH entry, no decompressor under TCG)
#   kernel/modules/VER/...  its modules (as shipped, .ko.xz) with modules.dep
#   kernel/version          the kernel release string
#   kernel-SUITE/...        the same for the kernel matrix: Debian's kernels of
#                           each suite in $EXT_SETUP_ROOT_QEMU_KERNELS (default
#                           "bookworm trixie": Linux 6.1 and 6.12 LTS)
#   rootfs-SUITE/           the same root for each suite in
#                           $EXT_SETUP_ROOT_QEMU_ROOTFS (default "trixie": a
#                           booted system with systemd 257, older than 260)
#   rootfs/                 minimal forky root: systemd 262, udev, dracut, kmod,
#                           squashfs-tools, erofs-utils, e2fsprogs (no kernel package)
#   manifest.txt            package versions of everything above
#
# It never touches the host's apt configuration: the kernel packages are fetched
# with a private apt config/state dir per suite, the rootfs with mmdebstrap.
# The mirror is the machine's own, read from its apt configuration
# (scripts/lib/debian-mirror.sh; EXT_SETUP_ROOT_DEBIAN_MIRROR overrides).
# Writers of the cache hold $EXT_SETUP_ROOT_CACHE/.prepare.lock. Every piece
# is built in a temporary directory and renamed into place when complete, so a
# rerun after an interruption restarts only the unfinished piece, and a rerun
# after success does nothing (idempotent). Set EXT_SETUP_ROOT_QEMU_REFRESH=1 to
# rebuild everything.
#
# EXT_SETUP_ROOT_QEMU_ARCH=arm64 (make qemu-prepare-arm64) prepares the arm64
# inputs instead, into $EXT_SETUP_ROOT_CACHE/qemu-arm64 under its own lock
# (.prepare-arm64.lock): Debian's arm64 kernel as a raw arm64 Image
# (kernel/Image; qemu-system-aarch64 boots it with -kernel) and the forky root
# bootstrapped for arm64 (mmdebstrap --arch=arm64), whose maintainer scripts
# run under forky's static qemu-aarch64 (scripts/prepare-qemu-user.sh)
# registered with binfmt_misc (scripts/lib/binfmt-arm64.sh). No kernel matrix
# and no trixie root for arm64.
set -euo pipefail

BASE=${EXT_SETUP_ROOT_CACHE:-/var/cache/ext-setup-root}
ARCH=${EXT_SETUP_ROOT_QEMU_ARCH:-amd64}
case $ARCH in
amd64)
	CACHE=$BASE/qemu
	LOCK=$BASE/.prepare.lock
	KERNEL_FILE=vmlinux
	;;
arm64)
	CACHE=$BASE/qemu-arm64
	LOCK=$BASE/.prepare-arm64.lock
	KERNEL_FILE=Image
	EXT_SETUP_ROOT_QEMU_KERNELS=
	EXT_SETUP_ROOT_QEMU_ROOTFS=
	;;
*)
	echo "prepare-qemu: unsupported EXT_SETUP_ROOT_QEMU_ARCH=$ARCH (amd64, arm64)" >&2
	exit 2
	;;
esac
# shellcheck source=lib/debian-mirror.sh
. "$(dirname "$0")/lib/debian-mirror.sh"
MIRROR=$(debian_mirror)
SUITE=${EXT_SETUP_ROOT_DEBIAN_SUITE:-forky}
KERNELS=${EXT_SETUP_ROOT_QEMU_KERNELS-bookworm trixie}
ROOTFSES=${EXT_SETUP_ROOT_QEMU_ROOTFS-trixie}
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
need mmdebstrap apt-get dpkg-deb zstd xz depmod flock
# mmdebstrap checks with arch-test that the foreign architecture runs.
[ "$ARCH" = amd64 ] || need arch-test

mkdir -p "$BASE"
exec 9>"$LOCK"
flock 9

if [ "$ARCH" = arm64 ]; then
	# The foreign root's maintainer scripts and the tests' dracut chroot run
	# arm64 binaries: forky's static qemu-aarch64 through binfmt_misc.
	EXT_SETUP_ROOT_CACHE=$BASE "$(dirname "$0")/prepare-qemu-user.sh"
	# shellcheck source=lib/binfmt-arm64.sh
	. "$(dirname "$0")/lib/binfmt-arm64.sh"
	binfmt_arm64 "$BASE/qemu-user/usr/bin/qemu-aarch64"
fi

if [ "${EXT_SETUP_ROOT_QEMU_REFRESH:-0}" = 1 ]; then
	log "refresh requested: removing $CACHE"
	rm -rf "$CACHE"
fi
mkdir -p "$CACHE"
cd "$CACHE"

# --- private apt state per suite (kernel packages) ------------------------------
# apt_for SUITE DIR writes a private apt config for SUITE under DIR and exports
# APT_CONFIG (call it in the subshell that fetches).
apt_for() {
	local suite=$1 APTDIR=$2
	mkdir -p "$APTDIR"/{lists/partial,cache/archives/partial,etc/apt.conf.d,etc/preferences.d,state}
	echo "deb [signed-by=$KEYRING] $MIRROR $suite main" >"$APTDIR/sources.list"
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
APT::Architecture "$ARCH";
APT::Architectures "$ARCH";
APT::Sandbox::User "root";
EOF
	touch "$APTDIR/state/status"
	export APT_CONFIG=$APTDIR/apt.conf
}

# extract_image VMLINUZ OUT puts the raw arm64 Image qemu-system-aarch64
# boots into OUT. Debian's forky arm64 vmlinuz is that Image already
# (uncompressed, with the PE header of its EFI stub; arm64 Image magic
# "ARMd" at offset 56); a compressed one (gzip, or an EFI zboot image
# carrying the compressed Image) is decompressed from the compressors'
# magic, as for x86, and the result checked for the same magic.
extract_image() {
	local img=$1 out=$2 magic tool off
	if [ "$(tail -c +57 "$img" | head -c 4)" = ARMd ]; then
		cp "$img" "$out"
		return 0
	fi
	for m in 'gzip:\x1f\x8b\x08' 'zstd:\x28\xb5\x2f\xfd' 'xz:\xfd\x37\x7a\x58\x5a\x00'; do
		tool=${m%%:*} magic=${m#*:}
		for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | head -3 | cut -d: -f1); do
			tail -c +$((off + 1)) "$img" | "$tool" -dcq 2>/dev/null >"$out" || true
			if [ "$(tail -c +57 "$out" | head -c 4)" = ARMd ]; then
				return 0
			fi
		done
	done
	log "arm64 Image extraction from $img failed"
	exit 1
}

# extract_vmlinux BZIMAGE OUT cuts the uncompressed ELF vmlinux out of a
# bzImage: it finds the payload by the magic of each compressor Debian has
# used (zstd since trixie, xz before) and decompresses from there (the
# decompressor stops at the end of its stream and ignores the trailing data
# with a warning).
extract_vmlinux() {
	local img=$1 out=$2 magic tool off
	for m in 'zstd:\x28\xb5\x2f\xfd' 'xz:\xfd\x37\x7a\x58\x5a\x00' 'gzip:\x1f\x8b\x08'; do
		tool=${m%%:*} magic=${m#*:}
		for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | head -3 | cut -d: -f1); do
			tail -c +$((off + 1)) "$img" | "$tool" -dcq 2>/dev/null >"$out" || true
			if head -c 4 "$out" | grep -q $'\x7fELF'; then
				return 0
			fi
		done
	done
	log "vmlinux extraction from $img failed"
	exit 1
}

# --- kernel --------------------------------------------------------------------
# fetch_kernel SUITE DIR APTDIR: Debian's current kernel of SUITE into DIR.
fetch_kernel() {
	local suite=$1 dest=$2 APTDIR=$3
	apt_for "$suite" "$APTDIR"
	log "$suite: apt-get update (private state in $APTDIR)"
	apt-get -qq update
	local img bin mods
	img=$(apt-cache depends "linux-image-$ARCH" | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
	[ -n "$img" ] || { log "cannot resolve linux-image-$ARCH"; exit 1; }
	local kver=${img#linux-image-}
	# forky splits the image package: a meta package depending on
	# linux-binary-*, linux-modules-* (bookworm/trixie: all in linux-image-*).
	local pkgs=()
	for p in "linux-binary-$kver" "linux-modules-$kver"; do
		apt-cache show "$p" >/dev/null 2>&1 && pkgs+=("$p")
	done
	[ ${#pkgs[@]} -gt 0 ] || pkgs=("$img")
	log "$suite kernel $kver: downloading ${pkgs[*]}"
	local tmp=$dest.tmp
	rm -rf "$tmp" && mkdir -p "$tmp/debs" "$tmp/x"
	(cd "$tmp"/debs && apt-get -qq download "${pkgs[@]}")
	for d in "$tmp"/debs/*.deb; do
		dpkg-deb -x "$d" "$tmp"/x
		dpkg-deb -W --showformat='${Package} ${Version}\n' "$d" >>"$tmp"/manifest.txt
	done
	local mdir="$tmp"/x/usr/lib/modules/$kver
	[ -d "$mdir" ] || mdir="$tmp"/x/lib/modules/$kver
	local vmlinuz=$mdir/vmlinuz
	[ -f "$vmlinuz" ] || vmlinuz="$tmp"/x/boot/vmlinuz-$kver
	if [ "$ARCH" = arm64 ]; then
		extract_image "$vmlinuz" "$tmp/Image"
	else
		extract_vmlinux "$vmlinuz" "$tmp/vmlinux"
	fi
	mkdir -p "$tmp"/modules
	mv "$mdir" "$tmp/modules/$kver"
	rm -f "$tmp/modules/$kver/vmlinuz"
	# depmod -b expects <base>/lib/modules; run it on a symlinked layout.
	mkdir -p "$tmp"/depmod/lib
	ln -sfn ../../modules "$tmp"/depmod/lib/modules
	depmod -b "$tmp"/depmod "$kver" 2>/dev/null
	rm -rf "$tmp"/depmod
	echo "$kver" >"$tmp"/version
	rm -rf "$tmp"/debs "$tmp"/x
	rm -rf "$dest" && mv "$tmp" "$dest"
	# The package lists are only needed to fetch; drop them (about 190 MB).
	rm -rf "$APTDIR"/lists/* "$APTDIR"/cache/*.bin
	log "$suite kernel ready: $(du -sh "$dest" | cut -f1)"
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

# fetch_rootfs SUITE DIR: the minimal root of SUITE into DIR, its package
# versions into DIR.manifest.
fetch_rootfs() {
	local suite=$1 dest=$2
	log "mmdebstrap $suite rootfs"
	rm -rf "$dest.tmp"
	# path-exclude keeps docs, man pages and locales out (size); the rootfs is
	# only a source for the test OS image and for building initramfs images.
	mmdebstrap --variant=minbase --quiet --arch="$ARCH" \
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
		"$suite" "$dest.tmp" "$MIRROR"
	mv "$dest.tmp/.manifest" "$dest.manifest.tmp"
	rm -rf "$dest" && mv "$dest.tmp" "$dest"
	mv "$dest.manifest.tmp" "$dest.manifest"
	log "$suite rootfs ready: $(du -sh "$dest" | cut -f1)"
}

pids=()
[ -f kernel/version ] && [ -f "kernel/$KERNEL_FILE" ] || fetch_kernel "$SUITE" kernel "$CACHE/apt" &
pids+=($!)
[ -x rootfs/usr/bin/dracut ] && [ -f rootfs.manifest ] || fetch_rootfs "$SUITE" rootfs &
pids+=($!)
for r in $ROOTFSES; do
	[ -x "rootfs-$r/usr/bin/dracut" ] && [ -f "rootfs-$r.manifest" ] || fetch_rootfs "$r" "rootfs-$r" &
	pids+=($!)
done
for k in $KERNELS; do
	[ -f "kernel-$k/version" ] && [ -f "kernel-$k/vmlinux" ] || fetch_kernel "$k" "kernel-$k" "$CACHE/apt-$k" &
	pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
[ $rc = 0 ] || { log "failed (rc $rc)"; exit $rc; }
ensure_rootfs_added

{
	echo "# QEMU test inputs ($ARCH) prepared by scripts/prepare-qemu.sh from $MIRROR $SUITE"
	echo "kernel $(cat kernel/version)"
	sed 's/^/kernel-pkg /' kernel/manifest.txt
	for k in $KERNELS; do
		echo "kernel-$k $(cat "kernel-$k/version")"
		sed "s/^/kernel-$k-pkg /" "kernel-$k/manifest.txt"
	done
	grep -E '^(systemd|udev|dracut|kmod|squashfs-tools|erofs-utils|e2fsprogs|libc6) ' rootfs.manifest | sed 's/^/rootfs-pkg /'
	for r in $ROOTFSES; do
		grep -E '^(systemd|udev|dracut|kmod|squashfs-tools|erofs-utils|e2fsprogs|libc6) ' "rootfs-$r.manifest" | sed "s/^/rootfs-$r-pkg /"
	done
} >manifest.txt.tmp
mv manifest.txt.tmp manifest.txt
log "done in $(($(date +%s) - start)) s: $CACHE ($(du -sh "$CACHE" --exclude='apt*' | cut -f1))"
