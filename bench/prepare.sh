#!/bin/bash
# prepare.sh: wall time of the pre stage (`ext-setup-root boot --stage=pre`:
# the prepare step, then the confext merge over /etc) against Flatcar's bash
# initrd-setup-root (its clean-up, then its /etc overlay mount) on the same
# root: an /etc of 2,000 entries (100 directories of 19 files), half of them
# identical to the vendor defaults in /usr/share/flatcar/etc, which the
# directory confext 00-flatcar-default also ships (the dedup removes only
# what the merge shows unchanged, so it needs the merge's default confext;
# with systemd.confext=0 it removes nothing). Both remove the same 1,000
# entries (checked before timing). Needs root (private mount namespace,
# overlay mounts, chroot for the script). Writes out/bench-prepare.md.
#
# Usage: bench/prepare.sh [BIN] [OUT]   (run from the repository root)
# PREPARE_BENCH_BASH_RUNS=0 leaves the script out (ours only, no
# comparison of the trees); PREPARE_BENCH_BASELINE=BIN2 times another
# build of ours on the same root in the same hyperfine run, then both
# alternating run by run, by the prepare and merge operations of their
# logs (before/after figures of a change).
set -euo pipefail
BIN=$(realpath "${1:-bin/ext-setup-root}")
BASE=${PREPARE_BENCH_BASELINE:+$(realpath "$PREPARE_BENCH_BASELINE")}
OUT=$(realpath -m "${2:-out/bench-prepare.md}")
REF=${EXT_SETUP_ROOT_BOOTENGINE_DIR:-$(realpath -m ../shared/reference/flatcar-bootengine)}
SCRIPT="$REF/initrd-setup-root"
RUNS=${PREPARE_BENCH_RUNS:-20}
[ -x "$BIN" ] || { echo "prepare.sh: $BIN missing (make build)" >&2; exit 1; }
[ -f "$SCRIPT" ] || { echo "prepare.sh: $SCRIPT missing (set EXT_SETUP_ROOT_BOOTENGINE_DIR)" >&2; exit 1; }
for t in hyperfine getfacl attr; do
	command -v $t >/dev/null || { echo "prepare.sh: $t missing (scripts/ci-deps.sh)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "prepare.sh: needs root" >&2; exit 1; }

if [ -z "${PREPARE_BENCH_INNER:-}" ]; then
	mkdir -p "$(dirname "$OUT")"
	exec unshare -m --propagation private env PREPARE_BENCH_INNER=1 PREPARE_BENCH_BASELINE="$BASE" "$0" "$BIN" "$OUT"
fi

W=$(mktemp -d /tmp/bench-prepare.XXXXXX)
mount -t tmpfs tmpfs "$W"
trap 'umount -R -l "$W"; rmdir "$W"' EXIT

# The vendor's /usr content: 2,000 default entries and an empty whiteout
# list; the template /etc: directories d00-d49 identical to the defaults,
# d50-d99 changed by the user.
V="$W/vendor/share/flatcar"
mkdir -p "$V/etc" "$W/template/etc"
: >"$V/etc-no-whiteouts"
for i in $(seq -w 0 99); do
	mkdir -p "$V/etc/d$i" "$W/template/etc/d$i"
	for j in $(seq -w 1 19); do
		echo "default $i $j" >"$V/etc/d$i/f$j.conf"
		if [ "$i" -lt 50 ]; then
			echo "default $i $j" >"$W/template/etc/d$i/f$j.conf"
		else
			echo "changed $i $j" >"$W/template/etc/d$i/f$j.conf"
		fi
	done
done
entries=$(cd "$W/template" && find etc -mindepth 1 | wc -l)
D="$W/vendor/lib/confexts/00-flatcar-default"
mkdir -p "$D"
cp -a "$V/etc" "$D/etc"
mkdir -p "$D/etc/extension-release.d"
echo "ID=_any" >"$D/etc/extension-release.d/extension-release.00-flatcar-default"

# root DIR: a root whose /usr is the vendor content over the host's /usr
# (the script runs `chroot /sysroot /usr/bin/find`), with the usrmerge links.
root() {
	mkdir -p "$1/usr"
	for l in bin lib lib64 sbin; do ln -s usr/$l "$1/$l"; done
	mount -t overlay overlay -o ro,lowerdir="$W/vendor:/usr" "$1/usr"
	cp -a "$W/template/etc" "$1/etc"
}
root "$W/bash"
root "$W/ours"

# The script's chroot: host /usr (with no-op stubs for the tmpfiles
# programs, not part of this measurement) and /sysroot = the bash root.
C="$W/chroot"
mkdir -p "$C"/{usr,dev,proc,tmp,sysroot,sysusr,etc} "$W/stubs/sbin" "$W/stubs/bin"
for l in bin lib lib64 sbin; do ln -s usr/$l "$C/$l"; done
ln -s /usr "$C/sysusr/usr"
printf '#!/bin/sh\nexit 0\n' >"$W/stubs/sbin/flatcar-tmpfiles"
cp "$W/stubs/sbin/flatcar-tmpfiles" "$W/stubs/bin/systemd-tmpfiles"
chmod 755 "$W/stubs/sbin/flatcar-tmpfiles" "$W/stubs/bin/systemd-tmpfiles"
mount -t overlay overlay -o ro,lowerdir="$W/stubs:/usr" "$C/usr"
mount --rbind /dev "$C/dev"
mount --rbind /proc "$C/proc"
mount --rbind "$W/bash" "$C/sysroot"
cp "$SCRIPT" "$C/tmp/setup-root"

# reset: the script leaves its own /etc overlay mounted; undo it, then
# restore both /etc trees.
reset="sh -c 'umount $C/sysroot/etc 2>/dev/null; umount -R $W/ours/etc 2>/dev/null; rm -rf $W/bash/etc $W/bash/.etc-work $W/ours/etc && cp -a $W/template/etc $W/bash/etc && cp -a $W/template/etc $W/ours/etc'"
echo "quiet" >"$W/cmdline"
export EXT_SETUP_ROOT_LOG=stderr
# The production binary reads only the real /proc/cmdline: put this
# command line there, in this script's own mount namespace.
mount --bind "$W/cmdline" /proc/cmdline
BASH_CMD="chroot $C /bin/bash /tmp/setup-root"
OURS_CMD="$BIN boot --stage=pre --root=$W/ours"

# The script forks about a dozen programs per entry (stat, getfacl, attr,
# dirname, cmp): one run takes from tens of seconds to many minutes on a
# loaded machine, so it is timed once (PREPARE_BENCH_BASH_RUNS for more),
# ours with hyperfine. Both must reach the same /etc.
ns() { date +%s%N; }
bash_ms=()
for i in $(seq 1 "${PREPARE_BENCH_BASH_RUNS:-1}"); do
	eval "$reset"
	t0=$(ns)
	$BASH_CMD >/dev/null 2>&1
	t1=$(ns)
	bash_ms+=($(( (t1 - t0) / 1000000 )))
	umount "$C/sysroot/etc"
done
$OURS_CMD 2>/dev/null
umount -R "$W/ours/etc" # compare the real /etc, as the script's unmounted one
left() { (cd "$1" && find etc -printf '%p %y %m %u %g %s\n' | sort); }
if [ "${#bash_ms[@]}" -gt 0 ] && ! diff <(left "$W/bash") <(left "$W/ours") >&2; then
	echo "prepare.sh: results differ" >&2
	exit 1
fi
removed=$((entries - $(left "$W/ours" | grep -c '^etc/')))
echo "prepare.sh: $entries entries in /etc, $removed removed by both; bash: ${bash_ms[*]} ms" >&2

J="$W/json"; mkdir -p "$J"
baseline=()
[ -n "$BASE" ] && baseline=(-n baseline "$BASE boot --stage=pre --root=$W/ours")
hyperfine -N --warmup 1 --runs "$RUNS" --export-csv "$J/ours.csv" --prepare "$reset" \
	-n ext-setup-root "$OURS_CMD" "${baseline[@]}" >&2
# With a baseline: both builds alternating run by run (load changes hit
# both), each run's prepare and confext merge operations read from its own
# log (op(N): [finished] ... (DURATION)); medians in ms.
op_ms() { sed -n "s/.*\[finished\] $1.* (\([0-9.]*\)\(m\|µ\)s)\$/\1 \2/p" "$2" | awk '{print ($2 == "m") ? $1 : $1 / 1000}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR) printf "%.2f", (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
if [ -n "$BASE" ]; then
	for i in $(seq 1 "$RUNS"); do
		for who in ext-setup-root baseline; do
			b=$BIN; [ $who = baseline ] && b=$BASE
			eval "$reset"
			"$b" boot --stage=pre --root="$W/ours" 2>"$J/log"
			echo "$who $(op_ms prepare "$J/log") $(op_ms 'confext merge' "$J/log")" >>"$J/ops"
		done
	done
	for who in ext-setup-root baseline; do
		printf '%s: operations of %s alternating runs, median prepare %s ms, confext merge %s ms, both %s ms\n' "$who" "$RUNS" \
			"$(awk -v w=$who '$1 == w {print $2}' "$J/ops" | median)" "$(awk -v w=$who '$1 == w {print $3}' "$J/ops" | median)" \
			"$(awk -v w=$who '$1 == w {print $2 + $3}' "$J/ops" | median)" >&2
	done
fi
if [ "${#bash_ms[@]}" -eq 0 ]; then
	awk -F, 'NR > 1 { printf "%s: median %.2f ms, mean %.2f ± %.2f ms\n", $1, $4 * 1000, $2 * 1000, $3 * 1000 }' "$J/ours.csv" | tee "$OUT"
	exit 0
fi
bash_med=$(printf '%s\n' "${bash_ms[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
	echo "| case | bash initrd-setup-root, median ms | ext-setup-root prepare, median ms | ratio ours/bash (medians) |"
	echo "|---|---|---|---|"
	awk -F, -v title="/etc of $entries entries, $removed identical to the defaults" -v b="$bash_med" -v n="${#bash_ms[@]}" '
		NR > 1 { mean = $2 * 1000; sd = $3 * 1000; med = $4 * 1000 }
		END {
			runs = (n == 1) ? "1 run" : n " runs"
			printf "| %s | %.0f (%s) | %.2f (mean %.2f ± %.2f) | %.5f (1/%.0f) |\n", title,
				b, runs, med, mean, sd, med / b, b / med
		}' "$J/ours.csv"
	echo
	echo "Measured in one run: the bash script timed with date around each run, ours with hyperfine (-N, $RUNS runs after 1 warm-up, /etc restored before every run; median, and mean ± stddev) on ${cpu:-$(uname -m)}, kernel $(uname -r), $(nproc) CPUs, roots on tmpfs; the script runs in a chroot with the host's /usr and no-op tmpfiles stubs; ours is \`ext-setup-root boot --stage=pre\` (the prepare step and the confext merge, process start-up included)."
} >"$OUT"
cat "$OUT"
