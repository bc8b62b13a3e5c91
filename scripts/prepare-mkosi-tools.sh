#!/bin/bash
# prepare-mkosi-tools.sh builds the Debian forky chroot that runs mkosi 27
# (and the systemd 262 tools it calls: systemd-repart, ukify, bootctl,
# systemd-measure) for `make mkosi-image` (examples/mkosi, docs/initrd.md).
#
# Why a chroot: the host is Debian 12, whose mkosi (14) and systemd (252)
# are far too old for the configuration (UKI profiles, repart
# --make-ddi, signed initrd PCR policies need 262's tools). mkosi's
# ToolsTree= would build the same tree, but with mkosi 14 on the host it
# cannot be bootstrapped.
#
# Result: $EXT_SETUP_ROOT_CACHE/mkosi-tools (default cache
# /var/cache/ext-setup-root). Idempotent: a complete chroot (marked by
# /.ext-setup-root-mkosi-tools inside it) is left alone. It is built in a
# temporary directory and renamed when complete, so an interrupted run
# leaves no half chroot behind. The host's apt configuration is only read
# (scripts/lib/debian-mirror.sh), never changed.
#
# Environment:
#   EXT_SETUP_ROOT_CACHE          cache root (default /var/cache/ext-setup-root)
#   EXT_SETUP_ROOT_DEBIAN_MIRROR  mirror URL (default: the machine's apt configuration)
#   MKOSI_TOOLS_FORCE=1           rebuild even if a complete chroot exists
set -euo pipefail

cache=${EXT_SETUP_ROOT_CACHE:-/var/cache/ext-setup-root}
# shellcheck source=lib/debian-mirror.sh
. "$(dirname "$0")/lib/debian-mirror.sh"
mirror=$(debian_mirror)
suite=forky
final=$cache/mkosi-tools
stamp=.ext-setup-root-mkosi-tools
# mkosi's own Depends bring systemd-repart, systemd-ukify, systemd-boot-efi,
# systemd-boot-tools, dosfstools, mtools, erofs-utils, squashfs-tools,
# openssl, python3-pefile/-cryptography, apt and the archive keyring. The rest:
# make and the Go toolchain are not needed inside (the binary is built on the
# host); tpm2-tools/jq to inspect policies.
include=mkosi,systemd,systemd-boot,systemd-boot-efi,systemd-boot-tools,systemd-ukify,systemd-repart,systemd-container,openssl,libcryptsetup12,ca-certificates,python3

log() { echo "prepare-mkosi-tools: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	log "must run as root (mmdebstrap, chroot)"
	exit 1
fi
if [ -e "$final/$stamp" ] && [ "${MKOSI_TOOLS_FORCE:-0}" != 1 ]; then
	log "up to date: $final ($(chroot "$final" mkosi --version 2>/dev/null))"
	exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.prepare-mkosi-tools.lock"
flock 9
for old in "$cache"/.mkosi-tools.tmp.*; do
	[ -e "$old" ] || continue
	log "removing leftover $old"
	rm -rf --one-file-system "$old"
done
tmp=$(mktemp -d "$cache/.mkosi-tools.tmp.XXXXXX")
cleanup() { rm -rf --one-file-system "$tmp" "$tmp.log"; }
trap cleanup EXIT

log "mmdebstrap $suite from $mirror into $tmp"
mmdebstrap --variant=minbase --include="$include" \
	--aptopt='Acquire::Check-Valid-Until "false"' \
	--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
	--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
	"$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 || {
	log "mmdebstrap failed, last lines of $tmp.log:"
	tail -n 30 "$tmp.log" >&2
	exit 1
}
rm -f "$tmp.log"
v=$(chroot "$tmp" mkosi --version)
chroot "$tmp" dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/.ext-setup-root-packages"
sync -f "$tmp" 2>/dev/null || sync
printf '%s\nsuite=%s mirror=%s\n' "$v" "$suite" "$mirror" >"$tmp/$stamp"
if [ -e "$final" ]; then
	mv -T "$final" "$tmp.old"
	mv -T "$tmp" "$final"
	rm -rf --one-file-system "$tmp.old"
else
	mv -T "$tmp" "$final"
fi
trap - EXIT
log "ready: $final ($v)"
