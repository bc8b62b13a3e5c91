# shellcheck shell=bash
# binfmt-arm64.sh: sourced by scripts/prepare-qemu.sh for the arm64 inputs
# (EXT_SETUP_ROOT_QEMU_ARCH=arm64). binfmt_arm64 QEMU registers QEMU, a
# static qemu-aarch64, as the kernel's handler of arm64 ELF executables
# under the name qemu-aarch64, so that mmdebstrap --arch=arm64 can run the
# foreign root's maintainer scripts and the QEMU tests can run dracut inside
# it with chroot. The name is the one Debian's qemu-user-binfmt uses, and
# mmdebstrap looks for exactly that name with the F flag (else it wants
# /usr/bin/qemu-aarch64-static to copy into the root). Flags: F opens the interpreter now, so it
# works inside any chroot without a copy of qemu there; P keeps each
# program's argv[0] (multi-call binaries dispatch on it; qemu learns the
# original through the AT_FLAGS auxv bit). An enabled registration of that
# name with the F flag (ours from an earlier run, or a distribution's) is
# left alone: the function is idempotent and does not
# remove the registration at exit, because a concurrent run may rely on it.
# binfmt_misc is mounted on /proc/sys/fs/binfmt_misc when it is not.

binfmt_arm64() {
	local qemu=$1 dir=/proc/sys/fs/binfmt_misc name=qemu-aarch64
	[ -x "$qemu" ] || { echo "binfmt_arm64: $qemu missing (scripts/prepare-qemu-user.sh)" >&2; return 1; }
	if [ ! -e "$dir/register" ]; then
		mount -t binfmt_misc binfmt_misc "$dir"
	fi
	if [ -e "$dir/$name" ]; then
		if grep -qx enabled "$dir/$name" && grep -q '^flags: [A-Z]*F' "$dir/$name"; then
			return 0
		fi
		echo "binfmt_arm64: $dir/$name exists but is disabled or lacks the F flag; remove it (echo -1 >$dir/$name) or fix it" >&2
		return 1
	fi
	printf ':%s:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:%s:FP\n' \
		"$name" "$qemu" >"$dir/register"
}
