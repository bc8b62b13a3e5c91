#!/bin/bash
# links.sh: wall time of `ext-setup-root links` against Flatcar's bash
# initrd-setup-root-after-ignition on the same fixture roots, one hyperfine
# run per case, ratio in the table. Needs root (private mount namespace,
# chroot for the script). Writes out/bench-links.md.
#
# Usage: bench/links.sh [BIN] [OUT]   (run from the repository root)
set -euo pipefail
BIN=$(realpath "${1:-bin/ext-setup-root}")
OUT=$(realpath -m "${2:-out/bench-links.md}")
REF=${EXT_SETUP_ROOT_BOOTENGINE_DIR:-$(realpath -m ../shared/reference/flatcar-bootengine)}
SCRIPT="$REF/initrd-setup-root-after-ignition"
[ -x "$BIN" ] || { echo "links.sh: $BIN missing (make build)" >&2; exit 1; }
[ -f "$SCRIPT" ] || { echo "links.sh: $SCRIPT missing (set EXT_SETUP_ROOT_BOOTENGINE_DIR)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "links.sh: hyperfine missing" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "links.sh: needs root" >&2; exit 1; }

if [ -z "${LINKS_BENCH_INNER:-}" ]; then
	mkdir -p "$(dirname "$OUT")"
	exec unshare -m --propagation private env LINKS_BENCH_INNER=1 "$0" "$BIN" "$OUT"
fi

W=$(mktemp -d /tmp/bench-links.XXXXXX)
mount -t tmpfs tmpfs "$W"
trap 'umount -R -l "$W"; rmdir "$W"' EXIT

V1=3760.2.0 V2=3815.2.0
# fixture DIR: an update boot (previous OEM image on /oem, the new one on
# root, links to the old version, four enabled extensions, a migration).
fixture() {
	local d=$1
	mkdir -p "$d"/{usr/lib,oem/sysext,oem/bin,etc/flatcar/oem-sysext,etc/flatcar/sysext,etc/extensions,usr/share/flatcar/oems}
	printf 'ID=flatcar\nVERSION=%s\nVERSION_ID=%s\nFLATCAR_BOARD=amd64-usr\n' $V2 $V2 >"$d/usr/lib/os-release"
	printf 'ID=test\n' >"$d/oem/oem-release"
	: >"$d/oem/sysext/active-oem-test"
	: >"$d/oem/sysext/migrate-oem-test"
	echo agent >"$d/oem/bin/old-agent"
	printf '/oem/bin/old-agent\n' >"$d/usr/share/flatcar/oems/test"
	head -c 1M /dev/zero >"$d/oem/sysext/oem-test-$V1.raw"
	head -c 1M /dev/zero >"$d/etc/flatcar/oem-sysext/oem-test-$V2.raw"
	ln -s /oem/sysext/oem-test-$V1.raw "$d/etc/extensions/oem-test.raw"
	printf '# extensions\nzfs\npodman # comment\n-docker-ext\n' >"$d/etc/flatcar/enabled-sysext.conf"
	printf 'docker-ext\nwasm\n' >"$d/usr/share/flatcar/enabled-sysext.conf"
	# (no link for the opted-out docker-ext: ours would remove it, the script
	# leaves it, a documented difference)
	echo docker-ext >"$d/etc/flatcar/sysext/flatcar-docker-ext-$V2.raw"
	for n in zfs podman wasm; do
		echo $n >"$d/etc/flatcar/sysext/flatcar-$n-$V2.raw"
		ln -s /etc/flatcar/sysext/flatcar-$n-$V1.raw "$d/etc/extensions/flatcar-$n.raw"
	done
}
fixture "$W/template"

# The script's chroot: host /usr for its tools, /sysroot = the fixture.
C="$W/chroot"
mkdir -p "$C"/{usr,dev,proc,tmp,sysroot,sysusr,etc}
for l in bin lib lib64 sbin; do ln -s usr/$l "$C/$l"; done
ln -s /usr "$C/sysusr/usr"
mount --rbind /usr "$C/usr"
mount --rbind /dev "$C/dev"
mount --rbind /proc "$C/proc"
cp "$SCRIPT" "$C/tmp/setup-root"
mkdir -p "$W/bash" "$W/ours"
mount --bind "$W/bash" "$C/sysroot"

reset() { echo "rm -rf $1/* && cp -a $W/template/. $1/"; }
export EXT_SETUP_ROOT_LOG=stderr
# An empty kernel command line for ours (the host's must not steer the
# A/B step); this shell is in its own mount namespace.
mount --bind /dev/null /proc/cmdline
BASH_CMD="chroot $C /bin/bash /tmp/setup-root"
OURS_CMD="$BIN links --root=$W/ours"
# Sanity: both must reach the same state before being timed.
eval "$(reset "$W/bash")"; eval "$(reset "$W/ours")"
$BASH_CMD >/dev/null 2>&1
$OURS_CMD 2>/dev/null
if ! diff <(cd "$W/bash" && find . -printf '%p %l\n' | sort) <(cd "$W/ours" && find . -printf '%p %l\n' | sort); then
	echo "links.sh: results differ, not benchmarking" >&2
	exit 1
fi

J="$W/json"; mkdir -p "$J"
hyperfine -N --warmup 3 --runs 60 --export-csv "$J/update.csv" \
	--prepare "sh -c '$(reset "$W/bash") && $(reset "$W/ours")'" \
	-n bash "$BASH_CMD" -n ext-setup-root "$OURS_CMD" >&2
hyperfine -N --warmup 3 --runs 200 --export-csv "$J/steady.csv" \
	-n bash "$BASH_CMD" -n ext-setup-root "$OURS_CMD" >&2

# hyperfine CSV columns: command,mean,stddev,median,user,system,min,max
row() { # CASE TITLE
	awk -F, -v title="$2" '
		NR > 1 { mean[$1] = $2 * 1000; sd[$1] = $3 * 1000; med[$1] = $4 * 1000 }
		END {
			b = "bash"; o = "ext-setup-root"
			printf "| %s | %.2f (mean %.2f ± %.2f) | %.2f (mean %.2f ± %.2f) | %.3f (1/%.1f) |\n", title,
				med[b], mean[b], sd[b], med[o], mean[o], sd[o], med[o] / med[b], med[b] / med[o]
		}' "$J/$1.csv"
}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
	echo "| case | bash script, median ms | ext-setup-root links, median ms | ratio ours/bash (medians) |"
	echo "|---|---|---|---|"
	row update "update boot (moves, link flips, migration)"
	row steady "steady boot (nothing to change)"
	echo
	echo "Measured with hyperfine (-N; median, and mean ± stddev) on ${cpu:-$(uname -m)}, kernel $(uname -r), $(nproc) CPUs, fixture on tmpfs; the script runs in a chroot with the host's /usr."
} >"$OUT"
cat "$OUT"
