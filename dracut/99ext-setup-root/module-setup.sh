#!/bin/bash
# dracut module for ext-setup-root: installs the static binary, the two
# initrd units (ext-setup-root-pre.service, ext-setup-root-post.service)
# and the kernel modules the extension merge needs. See docs/boot.md.
#
# Include it explicitly: `dracut --add ext-setup-root`, or
# add_dracutmodules+=" ext-setup-root " in a dracut.conf.d file.

# EXT_SETUP_ROOT_BIN is where `make install` put the binary (PREFIX/bin).
EXT_SETUP_ROOT_BIN=/usr/bin/ext-setup-root

# called by dracut
check() {
    # Without the binary the units could only fail: never include then.
    [[ -x "${dracutsysrootdir-}$EXT_SETUP_ROOT_BIN" ]] || return 1
    # 255: include only when asked (--add, add_dracutmodules or a module
    # depending on us), like Ignition's module; merging confexts into the
    # root is a policy decision of the OS image, not something to turn on
    # because a binary happens to be installed.
    return 255
}

# called by dracut
depends() {
    # systemd-initrd provides initrd.target, initrd-root-fs.target and
    # initrd-parse-etc.service, which our units are ordered against.
    echo systemd systemd-initrd
    return 0
}

# called by dracut
installkernel() {
    # overlay for the merge; loop for raw images; squashfs and erofs for
    # their contents; dm-verity and dm-mod for verity-protected images.
    # Not host-only: the image that boots is not the one building it.
    hostonly='' instmods overlay loop squashfs erofs dm-verity dm-mod
}

# ext_setup_root_fatal stops the dracut run. dracut ignores the status
# install() returns (module_install does not check it), so `return 1`
# would give an initramfs without our units, without the masks below, and
# a successful dracut. install() runs in dracut's own shell, so `exit`
# ends dracut, whose exit trap removes its temporary directory and writes
# no image.
ext_setup_root_fatal() {
    dfatal "ext-setup-root: $*"
    exit 1
}

# called by dracut
install() {
    # The binary is static (CGO_ENABLED=0): inst_simple, no library scan.
    inst_simple "$EXT_SETUP_ROOT_BIN" ||
        ext_setup_root_fatal "cannot install $EXT_SETUP_ROOT_BIN"
    inst_multiple -o modprobe

    local unit
    for unit in ext-setup-root-pre.service ext-setup-root-post.service; do
        inst_simple "$systemdsystemunitdir/$unit" ||
            ext_setup_root_fatal "cannot install $systemdsystemunitdir/$unit"
        # Required by initrd.target so both run on every boot (first boot
        # and later ones), and a failure fails the initrd transaction.
        $SYSTEMCTL -q --root "$initdir" add-requires initrd.target "$unit" ||
            ext_setup_root_fatal "systemctl add-requires initrd.target $unit failed"
    done

    # systemd 261+ ships systemd-confext-sysroot.service and
    # systemd-sysext-sysroot.service, enabled in the initrd by presets and
    # by dracut's systemd-sysext module. They would merge the same
    # hierarchies of /sysroot at the same time, without our mutable mode
    # or A/B links: mask them in the initrd (a no-op when absent). On the
    # booted system the host units keep working, with our drop-ins.
    local other
    for other in systemd-confext-sysroot.service systemd-sysext-sysroot.service; do
        $SYSTEMCTL -q --root "$initdir" mask "$other" ||
            ext_setup_root_fatal "systemctl mask $other failed"
    done
}
