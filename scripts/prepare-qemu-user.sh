#!/bin/bash
# prepare-qemu-user.sh puts Debian forky's qemu-user (static binaries) under
# $EXT_SETUP_ROOT_CACHE/qemu-user, for the arm64 unit tests (cross-test.sh).
# Bookworm's qemu-user 7.2 is not enough: it does not emulate openat2(2),
# which every lookup inside a root uses (rootfs), and returns no mount id
# from statx(2); forky's (11.x) does both. The .deb is fetched with apt
# inside the forky chroot of prepare-systemd262.sh (which reads the mirror
# from the machine's apt configuration) and only unpacked here: nothing is
# installed on the host or in the chroot. Idempotent: a complete copy is
# left alone; the copy is built in a temp dir and renamed into place.
set -euo pipefail
cache=${EXT_SETUP_ROOT_CACHE:-/var/cache/ext-setup-root}
chroot_dir=$cache/systemd262-root
final=$cache/qemu-user
log() { echo "prepare-qemu-user: $*" >&2; }

if [ -x "$final/usr/bin/qemu-aarch64" ]; then
	exit 0
fi
[ "$(id -u)" = 0 ] || { log "must run as root (chroot)"; exit 1; }
[ -x "$chroot_dir/usr/bin/apt-get" ] || { log "$chroot_dir missing: run scripts/prepare-systemd262.sh first"; exit 1; }
mkdir -p "$cache"
# Its own lock: it writes only $final, and prepare-qemu.sh (arm64) calls it
# while holding the arm64 inputs' lock, not the amd64 ones'.
exec 9>"$cache/.prepare-qemu-user.lock"
flock 9
[ -x "$final/usr/bin/qemu-aarch64" ] && exit 0
dl=$(mktemp -d "$chroot_dir/tmp/qemu-user-dl.XXXXXX")
tmp=$(mktemp -d "$cache/.qemu-user.XXXXXX")
trap 'rm -rf "$dl" "$tmp"' EXIT
chmod 777 "$dl" # apt's _apt user downloads into it
chroot "$chroot_dir" apt-get -qq -o Acquire::Check-Valid-Until=false update >&2
chroot "$chroot_dir" sh -c "cd /tmp/$(basename "$dl") && apt-get -qq download qemu-user" >&2
deb=$(ls "$dl"/qemu-user_*.deb)
dpkg-deb -x "$deb" "$tmp"
basename "$deb" >"$tmp/.deb"
"$tmp/usr/bin/qemu-aarch64" --version | head -n1 >&2
chmod 755 "$tmp"
mv -T "$tmp" "$final"
log "unpacked $(cat "$final/.deb") into $final"
