#!/bin/bash
# build-mkosi-image.sh builds examples/mkosi (make mkosi-image): a bootable
# GPT disk image with systemd-boot, a UKI and mkosi's systemd initrd carrying
# ext-setup-root, plus a second UKI of the same kernel and mkosi initrd
# without ext-setup-root (systemd's own sysroot units), for comparisons.
#
# Result in $EXT_SETUP_ROOT_CACHE/mkosi (default /var/cache/ext-setup-root):
#   extsr-mkosi.raw    the disk (ESP: EFI/Linux/extsr-mkosi-ours.efi, the
#                      default entry, and extsr-mkosi-systemd.efi)
#   manifest.txt       inputs hash and facts the tests read (key=value)
# A rerun whose inputs hash (the example configuration, the installed
# trees, this script, the tools chroot's package list, the mirror, the
# certificates) matches manifest.txt is a cache hit and does nothing.
# mkosi runs inside the forky chroot of scripts/prepare-mkosi-tools.sh.
#
# Environment: EXT_SETUP_ROOT_CACHE, EXT_SETUP_ROOT_DEBIAN_MIRROR,
# MKOSI_PROFILE (default "test": the image carries the QEMU test's
# reporter; "" builds the plain example), GO (passed to make),
# MKOSI_KEEP=1 (keep the build directory, for debugging).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
cache=${EXT_SETUP_ROOT_CACHE:-/var/cache/ext-setup-root}
# shellcheck source=lib/debian-mirror.sh
. "$src/scripts/lib/debian-mirror.sh"
mirror=$(debian_mirror)
tools=$cache/mkosi-tools
out=$cache/mkosi
keys=$cache/verity-keys
profile=${MKOSI_PROFILE-test}
# A sub-make of ours must not inherit the calling make's flags (-n, -j).
make() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make "$@"; }

log() { echo "build-mkosi-image: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root (chroot, mounts)"; exit 1; }
# Every mount of the build lives in a private mount namespace, so none
# outlives the script, even when it is killed.
if [ -z "${EXTSR_MKOSI_NS:-}" ]; then
	exec unshare --mount --propagation private env EXTSR_MKOSI_NS=1 "$0" "$@"
fi
[ -e "$tools/.ext-setup-root-mkosi-tools" ] || { log "no tools chroot in $tools (scripts/prepare-mkosi-tools.sh)"; exit 1; }

mkdir -p "$cache" "$out" "$keys"
exec 9>"$cache/.mkosi-image.lock"
flock 9

# key NAME makes the test key pair NAME (RSA 2048, self-signed) with the
# chroot's openssl, certificate last: it marks a complete pair.
key() {
	[ -e "$keys/$1.crt" ] && return 0
	local d
	d=$(mktemp -d "$tools/tmp/key.XXXXXX")
	chroot "$tools" openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj "/CN=ext-setup-root mkosi $1" \
		-keyout "${d#"$tools"}/k.pem" -out "${d#"$tools"}/c.crt" 2>/dev/null
	mv "$d/k.pem" "$keys/$1.key.tmp" && mv "$keys/$1.key.tmp" "$keys/$1.key"
	mv "$d/c.crt" "$keys/$1.crt.tmp" && mv "$keys/$1.crt.tmp" "$keys/$1.crt"
	rm -rf "$d"
}
key mkosi-vendor   # signs the default confext's verity root hash
key mkosi-pcr      # signs the UKIs' expected PCR 11 policies

# Stages of killed runs: their mounts died with their namespace.
for old in "$cache"/.mkosi-build.*; do
	[ -e "$old" ] || continue
	log "removing leftover $old"
	rm -rf --one-file-system "$old"
done
stage=$(mktemp -d "$cache/.mkosi-build.XXXXXX")
cleanup() {
	# Unmount before removing: the binds are on the same file system, so
	# rm --one-file-system would descend into them.
	umount -R "$tools/run/extsr-mkosi" 2>/dev/null || true
	umount "$stage/keys" "$stage/pkgcache" 2>/dev/null || true
	for m in dev sys proc; do umount -R "$tools/$m" 2>/dev/null || true; done
	if mountpoint -q "$stage/keys" || mountpoint -q "$stage/pkgcache"; then
		log "cannot unmount the binds in $stage; left in place"
		return
	fi
	if [ "${MKOSI_KEEP:-0}" = 1 ]; then log "kept $stage"; else rm -rf --one-file-system "$stage"; fi
}
trap cleanup EXIT

# The trees mkosi copies in: `make install` for the OS, `make
# install-initrd` for the initrd (packed as a cpio archive).
cp -a "$src/examples/mkosi" "$stage/src"
b=$stage/src/build
make -s -C "$src" install DESTDIR="$b/os" ${GO:+GO="$GO"} >&2
make -s -C "$src" install-initrd DESTDIR="$b/initrd-extsr" ${GO:+GO="$GO"} >&2
install -D -m 0644 "$keys/mkosi-vendor.crt" "$b/os/usr/lib/verity.d/extsr-mkosi-vendor.crt"
install -D -m 0644 "$keys/mkosi-vendor.crt" "$b/initrd-extra/etc/verity.d/extsr-mkosi-vendor.crt"
(cd "$b/initrd-extsr" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$b/extsr-initrd.cpio"

# apt sources for mkosi (its sandbox tree): the machine's mirror, forky
# main only. Without them mkosi writes its own, which name the Debian
# project's public host for the security and debug archives.
install -D -m 0644 /dev/stdin "$b/sandbox/etc/apt/sources.list.d/mkosi.sources" <<EOS
Types: deb
URIs: $mirror
Suites: forky
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS

# The default confext's content: a file only it has (the test looks for
# it) and its extension-release.
ctree=$stage/confext
install -D -m 0644 /dev/stdin "$ctree/etc/extsr-mkosi/default.conf" <<<"from-default-confext mkosi"
install -D -m 0644 /dev/stdin "$ctree/etc/extension-release.d/extension-release.00-mkosi-default" <<<"ID=_any"

# Inputs hash: everything above plus this script and the tools.
sum=$( {
	echo "format mkosi-v1 profile=$profile mirror=$mirror"
	cat "$0" "$tools/.ext-setup-root-packages" "$keys/mkosi-vendor.crt" "$keys/mkosi-pcr.crt"
	# Not the cpio archive: it carries install times; the tree it packs
	# (build/initrd-extsr) is hashed.
	(cd "$stage" && find src confext \( -type f -o -type l \) ! -name '*.cpio' | LC_ALL=C sort | while read -r f; do
		if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; else echo "$f $(stat -c %a "$f") $(sha256sum <"$f" | cut -d' ' -f1)"; fi
	done)
} | tee "$stage/inputs.txt" | sha256sum | cut -d' ' -f1)
if [ -e "$out/extsr-mkosi.raw" ] && grep -qx "inputs=$sum" "$out/manifest.txt" 2>/dev/null; then
	log "up to date: $out/extsr-mkosi.raw (inputs $sum)"
	exit 0
fi
log "building (inputs $sum)"
start=$(date +%s)

# Run mkosi in the tools chroot, with the stage bound at /run/extsr-mkosi.
w=/run/extsr-mkosi
mkdir -p "$tools$w" "$stage/out" "$cache/mkosi-pkgcache"
# mkosi's sandbox remounts / (MS_SLAVE) and pivots: the chroot's root
# must be a mount point.
mount --bind "$tools" "$tools"
mkdir -p "$stage/pkgcache" && mount --bind "$cache/mkosi-pkgcache" "$stage/pkgcache"
mkdir -p "$stage/keys" && mount --bind -o ro "$keys" "$stage/keys"
mount --rbind "$stage" "$tools$w"
mount -t proc proc "$tools/proc"
mount --rbind /sys "$tools/sys" && mount --make-rslave "$tools/sys"
mount --rbind /dev "$tools/dev" && mount --make-rslave "$tools/dev"
cp -L /etc/resolv.conf "$tools/etc/resolv.conf" 2>/dev/null || true
in_tools() { chroot "$tools" env -i PATH=/usr/sbin:/usr/bin HOME=/root TMPDIR=/var/tmp "$@"; }

# The signed default confext, made by systemd-repart as Flatcar makes its
# own (erofs, verity hash, PKCS#7 signature partition).
install -d -m 0755 "$b/os/usr/lib/confexts"
in_tools systemd-repart --make-ddi=confext --copy-source="$w/confext" \
	--private-key="$w/keys/mkosi-vendor.key" --certificate="$w/keys/mkosi-vendor.crt" \
	"$w/src/build/os/usr/lib/confexts/00-mkosi-default.raw" >&2

prof=()
[ -n "$profile" ] && prof=(--profile="$profile")
in_tools mkosi -C "$w/src" "${prof[@]}" \
	--output-directory="$w/out" --package-cache-dir="$w/pkgcache" \
	--sign-expected-pcr-key="$w/keys/mkosi-pcr.key" --sign-expected-pcr-certificate="$w/keys/mkosi-pcr.crt" \
	--force build >&2

# The second UKI: the same kernel, mkosi's initrd and kernel-modules initrd,
# command line and os-release as mkosi's UKI, without our cpio, so that
# systemd's own sysroot units (not masked there) merge the default confext;
# signed with the same PCR key and phases.
o=$w/out
in_tools python3 -c 'import pefile,sys
pe = pefile.PE(sys.argv[1], fast_load=True)
s = [x for x in pe.sections if x.Name.rstrip(b"\0") == b".cmdline"][0]
sys.stdout.write(s.get_data().rstrip(b"\0").decode().strip())' "$o/extsr-mkosi.efi" >"$stage/cmdline"
in_tools ukify build --linux="$o/extsr-mkosi.vmlinuz" \
	--initrd="$o/initrd" --initrd="$o/extsr-mkosi.kernel-modules-initrd" \
	--cmdline="@$w/cmdline" --os-release="@$o/extsr-mkosi.osrelease" \
	--pcr-banks=sha256 --pcr-private-key="$w/keys/mkosi-pcr.key" --pcr-certificate="$w/keys/mkosi-pcr.crt" \
	--sign-initrd-pcrs --output="$o/extsr-mkosi-systemd.efi" >&2

# Into the disk's ESP, next to mkosi's UKI (found by its PE
# content, not by name), with loader.conf choosing ours.
esp=$(in_tools python3 -c 'import json,subprocess,sys
t = json.loads(subprocess.check_output(["sfdisk", "--json", sys.argv[1]]))["partitiontable"]
p = [p for p in t["partitions"] if p["type"].upper() == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"][0]
print(p["start"] * t.get("sectorsize", 512))' "$o/extsr-mkosi.raw")
img="$stage/out/extsr-mkosi.raw@@$esp"
ours=$(MTOOLS_SKIP_CHECK=1 mdir -b -i "$img" ::/EFI/Linux | sed -n 's|.*/EFI/Linux/||p' | grep -E '\.efi$' || true)
[ "$(printf '%s\n' "$ours" | grep -c .)" = 1 ] || { log "want one UKI in the ESP's EFI/Linux, found: $ours"; exit 1; }
systemd_entry=extsr-mkosi-systemd.efi
MTOOLS_SKIP_CHECK=1 mcopy -o -i "$img" "$stage/out/extsr-mkosi-systemd.efi" "::/EFI/Linux/$systemd_entry"
printf 'timeout 0\ndefault %s\n' "$ours" >"$stage/loader.conf"
MTOOLS_SKIP_CHECK=1 mcopy -o -i "$img" "$stage/loader.conf" ::/loader/loader.conf

# Publish: the disk and both UKIs (for PCR checks), then the manifest,
# renamed into place last: it marks a complete image.
cp "$stage/inputs.txt" "$out/inputs.txt"   # what the hash covered, to explain a cache miss
for f in extsr-mkosi.raw extsr-mkosi.efi extsr-mkosi-systemd.efi; do
	cp --sparse=always "$stage/out/$f" "$out/$f.tmp"
	sync "$out/$f.tmp"
	mv "$out/$f.tmp" "$out/$f"
done
cat >"$out/manifest.txt.tmp" <<EOM
inputs=$sum
disk=extsr-mkosi.raw
esp_offset=$esp
entry_ours=$ours
entry_systemd=$systemd_entry
uki_ours=extsr-mkosi.efi
uki_systemd=extsr-mkosi-systemd.efi
pcr_certificate=$keys/mkosi-pcr.crt
verity_certificate=$keys/mkosi-vendor.crt
mkosi=$(in_tools mkosi --version)
profile=$profile
build_seconds=$(($(date +%s) - start))
EOM
sync "$out/manifest.txt.tmp"
mv "$out/manifest.txt.tmp" "$out/manifest.txt"
sync "$out"
log "built $out/extsr-mkosi.raw in $(($(date +%s) - start)) s"
