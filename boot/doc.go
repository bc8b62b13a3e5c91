// Package boot is the initrd pipeline that the ext-setup-root units run
// between mounting /sysroot and switch-root, in two stages:
//
//   - pre (before provisioning such as Ignition): make sure
//     /var/lib/extensions.mutable/etc points at /etc inside the root, then
//     merge the confexts over /etc in mutable mode, so that /etc itself is
//     the overlay's upper dir and provisioning writes land in it; on a
//     rerun the existing merge is refreshed atomically instead;
//   - post (after provisioning): A/B image selection and links, an atomic
//     confext refresh (confexts placed by provisioning appear), then the
//     sysext merge over /usr and /opt unless the root masks
//     systemd-sysext.service or the kernel command line says
//     systemd.sysext=0.
//
// The systemd switches (systemd.confext=, systemd.sysext=) are read as
// systemd 262's -sysroot units and booted units read them, unit by unit
// (ParseCmdline); the late stages in the booted system honour them and
// the dry run too.
//
// The engines doing the work (extension merge/refresh, A/B selection) are
// reached through the small Extensions and Selector interfaces, so that the
// order of the steps and the failure policy are tested with fakes, apart
// from the engines' own tests.
//
// Failure policy: an image the engine skips (missing, corrupt, wrong
// extension-release) is logged and the boot goes on, unless its name
// matches an essential pattern (by default the vendor default confext,
// "00-*default*", or on a Flatcar root "00-flatcar-default" by name, which
// must then exist); a failing essential image, a failing confext merge or
// refresh, or a failing A/B selection fail the stage, and the unit's
// OnFailure= isolates emergency.target. A failing sysext merge is only
// logged, as Flatcar's bootengine does. /etc is never left unmounted: the
// engine replaces a merge atomically and keeps the old one when the new
// one fails to assemble.
package boot
