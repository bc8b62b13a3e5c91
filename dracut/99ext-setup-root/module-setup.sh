#!/bin/bash
# dracut module for ext-setup-root: installs the static binary, the two
# initrd units (ext-setup-root-pre.service, ext-setup-root-post.service)
# and the kernel modules the extension merge needs. See docs/boot.md.
#
# Include it explicitly: `dracut --add ext-setup-root`, or
# add_dracutmodules+=" ext-setup-root " in a dracut.conf.d file.
#
# The post stage downloads a missing extension image (docs/fetch.md), so
# the module also installs, without enabling anything, what that needs:
# systemd-networkd with a default DHCP .network file, systemd-resolved
# when the OS has it, and the CA bundle. The fetcher starts the network
# units only when an image is missing. dracut.conf.d settings:
#   ext_setup_root_network=no     leave the network and the CA bundle out
#                                 (layouts with [fetch] enabled = false)
#   ext_setup_root_ca_bundle=PATH the bundle to install (same path in the
#                                 initrd; default Debian's below)

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
    # With the network part: systemd-sysusers, which makes the network's
    # users (systemd-network, systemd-resolve) at build time.
    if ext_setup_root_network_wanted; then
        echo systemd systemd-initrd systemd-sysusers
    else
        echo systemd systemd-initrd
    fi
    return 0
}

# called by dracut
installkernel() {
    # overlay for the merge; loop for raw images; squashfs and erofs for
    # their contents; dm-verity and dm-mod for verity-protected images.
    # Not host-only: the image that boots is not the one building it.
    hostonly='' instmods overlay loop squashfs erofs dm-verity dm-mod
    if ext_setup_root_network_wanted; then
        # virtio_net for virtual machines; a host-only image also gets the
        # NIC drivers the build host has loaded (instmods' host-only
        # filter). Other hardware: add_drivers in dracut.conf.d.
        hostonly='' instmods virtio_net
        if [[ ${hostonly-} ]]; then
            instmods =drivers/net/ethernet
        fi
    fi
}

# ext_setup_root_network_wanted: the network part is installed unless
# ext_setup_root_network=no.
ext_setup_root_network_wanted() {
    [[ ${ext_setup_root_network-yes} != no ]]
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

    if ext_setup_root_network_wanted; then
        ext_setup_root_install_network
    fi
}

# The default .network of the initrd: DHCP on every Ethernet link, as
# Flatcar's initrd has it (zz-: any more specific file sorts first).
EXT_SETUP_ROOT_NETWORK_FILE=/usr/lib/systemd/network/zz-ext-setup-root-default.network

# ext_setup_root_install_network installs the units the fetcher starts on
# demand (fetch.NetworkUnits), their users and sockets, the default
# .network file and the CA bundle. Nothing is enabled: a boot with no
# missing image starts no network unit. networkd and the CA bundle are
# required (a fetch without them can only fail at boot), resolved is
# installed when the OS ships it (without it only IP-literal servers
# resolve).
ext_setup_root_install_network() {
    local f
    for f in "$systemdutildir/systemd-networkd" "$systemdsystemunitdir/systemd-networkd.service" \
        "$systemdsystemunitdir/systemd-networkd.socket"; do
        inst_simple "$f" || ext_setup_root_fatal "cannot install $f (ext_setup_root_network=no leaves the network out)"
    done
    inst_multiple -o \
        "$systemdsystemunitdir/systemd-networkd-varlink.socket" \
        "$systemdsystemunitdir/systemd-networkd-varlink-metrics.socket" \
        "$systemdsystemunitdir/systemd-networkd-resolve-hook.socket" \
        "$systemdutildir/networkd.conf" "$systemdutildir/network/99-default.link" \
        "$systemdutildir/systemd-resolved" "$systemdsystemunitdir/systemd-resolved.service" \
        "$systemdutildir/resolved.conf" "$systemdutildir/resolv.conf" \
        networkctl resolvectl ip
    inst_sysusers systemd-network.conf
    if [[ -e $initdir$systemdutildir/systemd-resolved ]]; then
        inst_sysusers systemd-resolve.conf
        # Go's resolver reads /etc/resolv.conf: resolved's stub file.
        ln -sfn ../run/systemd/resolve/stub-resolv.conf "$initdir/etc/resolv.conf" ||
            ext_setup_root_fatal "cannot link $initdir/etc/resolv.conf"
    fi
    # dracut's systemd-sysusers module ran before us (78 < 99): make our
    # users now. --root: the initrd's own passwd and group.
    systemd-sysusers --root="$initdir" >/dev/null ||
        ext_setup_root_fatal "systemd-sysusers --root=$initdir failed"
    mkdir -p "$initdir${EXT_SETUP_ROOT_NETWORK_FILE%/*}" &&
        printf '%s\n' '[Match]' 'Name=en* eth*' '' '[Network]' 'DHCP=yes' '' '[DHCPv4]' 'ClientIdentifier=mac' \
            >"$initdir$EXT_SETUP_ROOT_NETWORK_FILE" ||
        ext_setup_root_fatal "cannot write $EXT_SETUP_ROOT_NETWORK_FILE"

    local ca=${ext_setup_root_ca_bundle-/etc/ssl/certs/ca-certificates.crt}
    inst_simple "$ca" || ext_setup_root_fatal "cannot install the CA bundle $ca (install ca-certificates, set ext_setup_root_ca_bundle=, or ext_setup_root_network=no)"
}
