#!/bin/bash
# prepare-systemd262.sh builds the Debian forky chroot holding the real
# systemd 262 (plus squashfs-tools and erofs-utils) that the differential
# tests in test/systemd262 and the confext benchmarks in bench/ run against.
#
# Result: $EXT_SETUP_ROOT_CACHE/systemd262-root (default cache
# /var/cache/ext-setup-root). The script is idempotent: a complete chroot
# (marked by /.ext-setup-root-systemd262 inside it) is left alone. It builds
# into a temporary directory next to the final one and renames it only when
# complete, so an interrupted run never leaves a half chroot behind.
#
# It never touches the host's apt sources: debootstrap fetches forky into the
# cache directory only. The Debian mirror's Release file for a testing suite
# may carry an expired Valid-Until; debootstrap does not check Valid-Until,
# and apt inside the chroot is told not to either (we never run it there
# during tests, but a developer may).
#
# Environment:
#   EXT_SETUP_ROOT_CACHE   cache root (default /var/cache/ext-setup-root)
#   EXT_SETUP_ROOT_DEBIAN_MIRROR  mirror URL (default: the machine's apt
#                          configuration, see scripts/lib/debian-mirror.sh)
#   SYSTEMD262_SUITE       suite (default forky)
#   SYSTEMD262_FORCE=1     rebuild even if a complete chroot exists
set -euo pipefail

cache=${EXT_SETUP_ROOT_CACHE:-/var/cache/ext-setup-root}
# shellcheck source=lib/debian-mirror.sh
. "$(dirname "$0")/lib/debian-mirror.sh"
mirror=$(debian_mirror)
suite=${SYSTEMD262_SUITE:-forky}
final=$cache/systemd262-root
stamp=.ext-setup-root-systemd262
# Packages beyond minbase: systemd itself (systemd-sysext/-confext), the image
# builders used inside the chroot, xattr tools, and util-linux's mount tools;
# systemd-repart, openssl and libcryptsetup12 (repart dlopens it for Verity=)
# build the signed verity DDIs (--make-ddi) of the
# image tests and the QEMU verity scenarios; systemd-container brings
# systemd-dissect, the reference of the dissection differential test.
include=systemd,squashfs-tools,erofs-utils,attr,util-linux,mount,kmod,systemd-repart,openssl,libcryptsetup12,systemd-container
# added lists packages later added to $include: a complete chroot that lacks
# them gets them with apt inside the chroot instead of a rebuild.
added="systemd-repart openssl libcryptsetup12 systemd-container"

log() { echo "prepare-systemd262: $*" >&2; }

# version prints the systemd version of the chroot at $1.
version() {
	chroot "$1" /usr/bin/systemctl --version 2>/dev/null | head -n1
}

# check_version fails unless the chroot at $1 carries systemd 262.
check_version() {
	local v
	v=$(version "$1")
	case "$v" in
	"systemd 262"*) ;;
	*) log "unexpected systemd version in $1: '${v:-none}' (want 262)"; return 1 ;;
	esac
	echo "$v"
}

if [ "$(id -u)" != 0 ]; then
	log "must run as root (debootstrap, chroot)"
	exit 1
fi

if [ -e "$final/$stamp" ] && [ "${SYSTEMD262_FORCE:-0}" != 1 ]; then
	missing=()
	for p in $added; do
		chroot "$final" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "adding ${missing[*]} to $final"
		mkdir -p "$cache"
		# One writer of the cache at a time (other prepare runs).
		exec 9>"$cache/.prepare.lock"
		flock 9
		chroot "$final" apt-get -qq -o Acquire::Check-Valid-Until=false update >&2
		DEBIAN_FRONTEND=noninteractive chroot "$final" apt-get -qq -y --no-install-recommends install "${missing[@]}" >&2
		rm -f "$final"/var/cache/apt/archives/*.deb
		chroot "$final" dpkg-query -W -f='${Package} ${Version}\n' >"$final/.ext-setup-root-packages"
		flock -u 9
	fi
	log "up to date: $final"
	check_version "$final"
	exit 0
fi

script=/usr/share/debootstrap/scripts/sid
if [ ! -e "$script" ]; then
	log "debootstrap's sid script $script is missing (install debootstrap)"
	exit 1
fi

mkdir -p "$cache"
# Leftovers of interrupted runs are removed first; they were never renamed,
# so nothing complete is lost.
for old in "$cache"/.systemd262-root.tmp.*; do
	[ -e "$old" ] || continue
	log "removing leftover $old"
	rm -rf --one-file-system "$old"
done
tmp=$(mktemp -d "$cache/.systemd262-root.tmp.XXXXXX")
cleanup() { rm -rf --one-file-system "$tmp"; }
trap cleanup EXIT

log "debootstrap $suite from $mirror into $tmp"
# --keyring: the host's Debian archive keyring; the suite is signed with the
# current archive keys.
debootstrap --variant=minbase --include="$include" \
	--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
	"$suite" "$tmp" "$mirror" "$script" >"$tmp.log" 2>&1 || {
	log "debootstrap failed, last lines of $tmp.log:"
	tail -n 30 "$tmp.log" >&2
	exit 1
}
rm -f "$tmp.log"

# apt inside the chroot (only for manual use) must accept an expired Release.
mkdir -p "$tmp/etc/apt/apt.conf.d"
echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99ext-setup-root-no-valid-until"
# Drop the package cache: the debs are not needed after installation.
rm -f "$tmp"/var/cache/apt/archives/*.deb

v=$(check_version "$tmp")
# Record what was installed so runs can be compared; the stamp is written
# last, just before the rename, and marks the chroot as complete.
chroot "$tmp" dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/.ext-setup-root-packages"
sync -f "$tmp" 2>/dev/null || sync
printf '%s\nsuite=%s mirror=%s\n' "$v" "$suite" "$mirror" >"$tmp/$stamp"

if [ -e "$final" ]; then
	# Forced rebuild: swap the old one out, then delete it.
	mv -T "$final" "$tmp.old"
	mv -T "$tmp" "$final"
	rm -rf --one-file-system "$tmp.old"
else
	mv -T "$tmp" "$final"
fi
trap - EXIT
log "ready: $final"
echo "$v"
