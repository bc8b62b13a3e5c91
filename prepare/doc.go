// Package prepare does the /etc hygiene and first-boot duties that Flatcar's
// initrd-setup-root performs before /etc is layered over the vendor
// defaults, so that provisioning (Ignition) sees a clean /etc:
//
//   - reset: a selective OS reset prepared by flatcar-reset (a non-empty
//     /selective-os-reset holds a POSIX extended regex of the paths to
//     keep; everything else on the root file system goes, then the flag
//     file and /etc/machine-id);
//   - whiteouts: user whiteouts (0:0 character devices) of the paths the
//     vendor lists in /usr/share/flatcar/etc-no-whiteouts and of the user
//     databases (passwd, group, shadow, gshadow) are removed, so that the
//     defaults and tmpfiles can recreate them;
//   - tmpfiles: an early systemd-tmpfiles --root run of a few named
//     configs (and flatcar-tmpfiles), when present;
//   - machine-id: the image's blank machine-id is removed, so systemd
//     generates one;
//   - dedup: /etc entries are removed when the confext merge that follows
//     shows the same without them: the default confext is what shows
//     through at that path, identical (type, mode, owner, xattrs and ACLs,
//     link target or content), so a later update of that default takes
//     effect; never below an opaque directory, only empty directories, not
//     at all when /etc/.no-dup-update exists or no merge follows;
//   - oem: a PXE initrd's /usr/share/oem is copied into a mounted
//     /sysroot/oem.
//
// Everything on the root file system is done through a detached,
// non-recursive clone of the root's mount (open_tree OPEN_TREE_CLONE), so
// that when /etc already carries the confext overlay (a rerun) the work
// happens on the real /etc underneath it, its upper dir, never through the
// overlay, and /etc stays merged. Every name is resolved below a directory
// fd (openat2 RESOLVE_IN_ROOT, O_NOFOLLOW on the last element; the paths
// of the configuration against the root's fd, so an absolute symlink in
// /etc names the root's /etc); every
// removal re-checks, right before the unlink, that the name still is the
// entry that was compared. Each duty is idempotent, so a rerun after a
// crash at any point reaches the same result.
package prepare
