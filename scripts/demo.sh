#!/bin/bash
# demo.sh shows ext-setup-root's main job on built-in demo data: it builds a
# small Flatcar-like root (vendor default confext in /usr, a user confext,
# an OEM sysext on the OEM "partition", a versioned Flatcar extension) on a
# tmpfs inside a private mount namespace, and runs both initrd stages on it
# exactly as the units do. Nothing outside the namespace is touched.
set -euo pipefail
BIN=$(realpath "${BIN:-bin/ext-setup-root}")
if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (mount namespaces and overlayfs); try: sudo make demo" >&2
	exit 1
fi
if [ "${1:-}" != --inside ]; then
	# A private mount namespace: every mount below dies with this process.
	exec unshare --mount --propagation private "$0" --inside
fi

R=$(mktemp -d /tmp/ext-setup-root-demo.XXXXXX)
mount -t tmpfs -o mode=0755 demo-root "$R"
export EXT_SETUP_ROOT_LOG=stderr EXT_SETUP_ROOT_STATE_DIR="$R/run/ext-setup-root"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# image DIR OUT.raw: a squashfs image when mksquashfs exists (make demo
# installs squashfs-tools when it can), else an ext4 image made by mke2fs -d
# (e2fsprogs is part of every Debian installation): both are .raw files, as
# the A/B selection expects. DEMO_IMAGE_TOOL=ext4 forces the fallback.
image() {
	if [ "${DEMO_IMAGE_TOOL:-}" != ext4 ] && command -v mksquashfs >/dev/null; then
		mksquashfs "$1" "$2" -quiet -noappend -all-root >/dev/null
	else
		mke2fs -q -F -t ext4 -O ^has_journal -E root_owner=0:0 -d "$1" "$2" 4M
	fi
	rm -rf "$1"
}

say "building the demo root in $R"
mkdir -p "$R"/{etc,var/lib/confexts,usr/lib/confexts,oem/sysext,etc/flatcar/sysext,usr/share/flatcar,run,opt}
cat > "$R/usr/lib/os-release" <<'OS'
ID=flatcar
VERSION=1000.0.0
VERSION_ID=1000.0.0
SYSEXT_LEVEL=1.0
OS
echo "demo-host" > "$R/etc/hostname"
# As Flatcar ships it: /etc is mutable when /var/lib/extensions.mutable/etc
# exists (the pre stage links it to /etc itself).
mkdir -p "$R/usr/lib/systemd"
printf '[ConfExt]\nMutable=auto\n' > "$R/usr/lib/systemd/confext.conf"
t=$(mktemp -d)
mkdir -p "$t/etc/extension-release.d" "$t/etc/ssh"
echo "ID=_any" > "$t/etc/extension-release.d/extension-release.00-flatcar-default"
echo "vendor default sshd config" > "$t/etc/ssh/sshd_config"
echo "vendor default motd" > "$t/etc/motd"
image "$t" "$R/usr/lib/confexts/00-flatcar-default.raw"
mkdir -p "$R/var/lib/confexts/user-ntp/etc/extension-release.d"
# ID=_any: the user's confext is not tied to one OS version (it stays
# merged after the update to slot B below).
echo "ID=_any" > "$R/var/lib/confexts/user-ntp/etc/extension-release.d/extension-release.user-ntp"
echo "server time.example.com" > "$R/var/lib/confexts/user-ntp/etc/ntp.conf"
echo "ID=demo" > "$R/oem/oem-release"
touch "$R/oem/sysext/active-oem-demo"
for n in oem-demo flatcar-tools; do
	t=$(mktemp -d)
	mkdir -p "$t/usr/lib/extension-release.d" "$t/usr/share/$n"
	printf 'ID=flatcar\nVERSION_ID=1000.0.0\n' > "$t/usr/lib/extension-release.d/extension-release.$n"
	echo "$n for 1000.0.0" > "$t/usr/share/$n/version"
	case $n in
	oem-demo) image "$t" "$R/oem/sysext/oem-demo-1000.0.0.raw" ;;
	*) image "$t" "$R/etc/flatcar/sysext/flatcar-tools-1000.0.0.raw" ;;
	esac
done
echo "tools   # enabled by the user" > "$R/usr/share/flatcar/enabled-sysext.conf"

say "plan: what the A/B selection would do (changes nothing)"
run "$BIN" plan --root="$R"

say "stage pre: default confext + user confexts over a mutable /etc"
run "$BIN" boot --stage=pre --root="$R"
run "$BIN" confext --root="$R" status
echo "user file:        $(cat "$R/etc/hostname")"
echo "vendor default:   $(cat "$R/etc/motd")"
echo "user confext:     $(cat "$R/etc/ntp.conf")"

say "stage post: A/B links, atomic confext refresh, sysext merge"
run "$BIN" boot --stage=post --root="$R"
run ls -l "$R/etc/extensions"
echo "OEM sysext:       $(cat "$R/usr/share/oem-demo/version")"
echo "Flatcar ext:      $(cat "$R/usr/share/flatcar-tools/version")"

say "/etc is writable and writes land in the real /etc (upper dir = /etc itself)"
run sh -c "echo written-after-merge > '$R/etc/new-file'"
run cat "$R/etc/.systemd-confext/origin"

say "refresh with nothing changed: skipped, like systemd 260+"
run "$BIN" confext --root="$R" refresh

say "edit the user confext in place and refresh: replaced atomically (mount beneath)"
echo "server ntp.example.org" > "$R/var/lib/confexts/user-ntp/etc/ntp.conf"
run "$BIN" confext --root="$R" refresh
echo "user confext now: $(cat "$R/etc/ntp.conf")"
grep " $R/etc " /proc/self/mountinfo | cut -d' ' -f1-10

say "boot slot B (VERSION 1001.0.0): the links flip to the new images"
# An update installs slot B's /usr and places its images on the root
# partition; here the sysext merge is lifted first, to edit /usr.
run "$BIN" sysext --root="$R" unmerge
sed -i 's/1000\.0\.0/1001.0.0/' "$R/usr/lib/os-release"
mkdir -p "$R/etc/flatcar/oem-sysext"
for n in oem-demo flatcar-tools; do
	t=$(mktemp -d)
	mkdir -p "$t/usr/lib/extension-release.d" "$t/usr/share/$n"
	printf 'ID=flatcar\nVERSION_ID=1001.0.0\n' > "$t/usr/lib/extension-release.d/extension-release.$n"
	echo "$n for 1001.0.0" > "$t/usr/share/$n/version"
	case $n in
	oem-demo) image "$t" "$R/etc/flatcar/oem-sysext/oem-demo-1001.0.0.raw" ;;
	*) image "$t" "$R/etc/flatcar/sysext/flatcar-tools-1001.0.0.raw" ;;
	esac
done
run "$BIN" plan --root="$R"
run "$BIN" boot --stage=post --root="$R"
run ls -l "$R/etc/extensions" "$R/oem/sysext" "$R/etc/flatcar/oem-sysext"
echo "OEM sysext:       $(cat "$R/usr/share/oem-demo/version")"
echo "Flatcar ext:      $(cat "$R/usr/share/flatcar-tools/version")"

say "unmerge: the real /etc is back, with the file written through the overlay"
run "$BIN" sysext --root="$R" unmerge
run "$BIN" confext --root="$R" unmerge
run ls "$R/etc"
say "demo finished"
