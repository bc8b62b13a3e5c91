#!/bin/bash
# cross-test.sh ARCH runs the unit tests (go test -short, those needing
# neither root nor prepared inputs) of every package built for ARCH, under
# qemu-user: forky's static qemu-ARCH that prepare-qemu-user.sh unpacks into
# the cache (QEMU_USER overrides; bookworm's 7.2 lacks openat2). Each package's test binary
# is built static (CGO_ENABLED=0) with go test -c and run in its package
# directory, as it would be by go test, so no binfmt_misc registration is
# needed. The binaries run as user nobody: the root tier (mounts, loop
# devices, the new mount API, most of which qemu-user does not emulate)
# skips itself then, so this run covers exactly the unit tier, and
# EXT_SETUP_ROOT_REQUIRE_ALL is cleared for it (the root tier runs natively
# in make test with it set).
set -euo pipefail
arch=${1:-arm64}
cache=${EXT_SETUP_ROOT_CACHE:-/var/cache/ext-setup-root}
case $arch in
arm64) qemu=${QEMU_USER:-$cache/qemu-user/usr/bin/qemu-aarch64} ;;
*) echo "cross-test: unsupported arch $arch" >&2; exit 2 ;;
esac
[ -x "$qemu" ] || { echo "cross-test: $qemu missing (scripts/prepare-qemu-user.sh)" >&2; exit 1; }
"$qemu" --version | head -n1
GO=${GO:-go}
top=$(pwd)
out=$(mktemp -d /tmp/ext-setup-root-cross.XXXXXX)
trap 'rm -rf "$out"' EXIT
chmod 755 "$out"
user=()
if [ "$(id -u)" = 0 ]; then
	user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
start=$(date +%s)
pass=0 fail=0 none=0 tests=0 skips=0
failed=()
for pkg in $($GO list ./...); do
	dir=$($GO list -f '{{.Dir}}' "$pkg")
	name=$(echo "${pkg#*/ext-setup-root/ext-setup-root}" | tr / _)
	bin="$out/${name:-root}.test"
	CGO_ENABLED=0 GOARCH=$arch $GO test -c -o "$bin" "$pkg"
	if [ ! -e "$bin" ]; then
		none=$((none + 1)) # no test files
		continue
	fi
	chmod 755 "$bin"
	log="$out/${name:-root}.log"
	if (cd "$dir" && env -u EXT_SETUP_ROOT_REQUIRE_ALL HOME=/tmp EXT_SETUP_ROOT_TEST_EMULATOR="$qemu" "${user[@]}" "$qemu" "$bin" -test.short -test.count=1 -test.timeout=10m -test.v) >"$log" 2>&1; then
		pass=$((pass + 1))
		np=$(grep -c -- "--- PASS:" "$log" || true)
		ns=$(grep -c -- "--- SKIP:" "$log" || true)
		tests=$((tests + np)) skips=$((skips + ns))
		echo "ok    $pkg ($arch, qemu-user: $np passed, $ns skipped)"
	else
		fail=$((fail + 1))
		failed+=("$pkg")
		echo "FAIL  $pkg ($arch, qemu-user)"
		tail -n 40 "$log"
	fi
done
echo "cross-test $arch: $pass packages passed ($tests tests and subtests passed, $skips skipped: root, tools or inputs), $fail failed, $none without tests, $(( $(date +%s) - start ))s"
[ "$fail" = 0 ] || { echo "cross-test: failed: ${failed[*]}" >&2; exit 1; }
