package qemu

// reporterScript runs in the booted guest (extsr-report.service) and prints
// the facts the host checks as "EXTSR-RESULT key=value" lines on the console,
// then powers off: forced (poweroff -ff, 0.2 s) unless extsr.clean is on the
// kernel command line, in which case it asks for a clean shutdown so units
// stopping late can report too. Scenario hooks in /etc/extsr/check.d run
// before the final marker and print their own markers.
const reporterScript = `#!/bin/bash
exec >/dev/console 2>&1
# Keep the kernel's messages off the console while the facts are printed: a
# printk in the middle of a line (a module loading) once split a result line
# in two and the host lost it. Critical messages and worse (panics) still
# reach the console.
echo 3 >/proc/sys/kernel/printk 2>/dev/null
r() { printf 'EXTSR-RESULT %s=%s\n' "$1" "$2"; }
each() { local k=$1; shift; "$@" 2>&1 | while IFS= read -r l; do r "$k" "$l"; done; }
r start "$(cut -d' ' -f1 /proc/uptime)"
r usr_version "$(. /usr/lib/os-release; echo "$VERSION_ID")"
r kernel "$(uname -r)"
r cmdline "$(cat /proc/cmdline)"
each etc_mount awk '$5 == "/etc" { print $9, $10, $11 }' /proc/self/mountinfo
r etc_mount_id "$(awk '$5 == "/etc" { id = $1 } END { print id }' /proc/self/mountinfo)"
r usr_mount_id "$(awk '$5 == "/usr" { id = $1 } END { print id }' /proc/self/mountinfo)"
each usr_mount awk '$5 == "/usr" { print $9, $10 }' /proc/self/mountinfo
each oem_mount awk '$5 == "/oem" { print $9, $10 }' /proc/self/mountinfo
each confext_meta ls -A /etc/.systemd-confext
for f in /etc/.systemd-confext/*; do [ -f "$f" ] && r "confext_meta_${f##*/}" "$(tr '\n' ' ' <"$f")"; done
r confext_status "$(systemd-confext status --json=short 2>&1)"
r sysext_status "$(systemd-sysext status --json=short 2>&1)"
# By unit and by identifier: a short-lived process's lines can reach the
# journal before journald resolved its cgroup, without unit metadata.
# systemd 262 logs "Using extensions", "Merged ..." and the refresh skip
# from a forked child with the identifier "(sd-merge)", which exits at
# once, so those lines often carry no unit at all: window() prints the
# (sd-merge) lines logged while the given unit ran (systemd-confext.service
# is ordered before systemd-sysext.service, so the windows do not overlap).
window() {
	journalctl -b -o short-monotonic --no-pager | awk -v u="$1" '
		index($0, "Starting " u) { w = 1 }
		w && index($0, "(sd-merge)[") { sub(/^.*\(sd-merge\)\[[0-9]+\]: /, ""); print "(sd-merge): " $0 }
		index($0, "Finished " u) || index($0, "Failed to start " u) { w = 0 }'
}
each confext_journal journalctl -b -o cat -u systemd-confext.service --no-pager
each confext_journal journalctl -b -o cat -t systemd-confext --no-pager
each confext_journal window systemd-confext.service
each sysext_journal journalctl -b -o cat -u systemd-sysext.service --no-pager
each sysext_journal journalctl -b -o cat -t systemd-sysext --no-pager
each sysext_journal window systemd-sysext.service
each esr_log journalctl -b -o cat -t ext-setup-root --no-pager
each esr_kmsg sh -c 'dmesg | grep -a "ext-setup-root\["'
each esr_unit journalctl -b -o cat -u ext-setup-root-pre.service -u ext-setup-root-post.service --no-pager
r oem_service "$(systemctl is-active oem-test.service) $(cat /run/oem-test-service 2>/dev/null)"
for l in /etc/extensions/*; do [ -L "$l" ] && r link "${l##*/} -> $(readlink "$l")"; done
for d in /oem/sysext /etc/flatcar/sysext /etc/flatcar/oem-sysext; do
	for f in "$d"/*; do [ -e "$f" ] && r image "$f"; done
done
for f in /etc/extsr/default.conf /etc/issue.extsr /etc/extsr/persist; do
	[ -e "$f" ] && r file "$f: $(head -c 200 "$f" | tr '\n' ' ')"
done
if touch /etc/.extsr-writable 2>/dev/null; then r etc_writable yes; rm -f /etc/.extsr-writable; else r etc_writable no; fi
r usr_ext "$(ls /usr/lib/extsr-ext 2>/dev/null | tr '\n' ' ')"
# Device-mapper and loop devices: which verity devices serve which image
# (names, dm uuids, the devices under them) and what the loops back.
for d in /sys/block/dm-*; do [ -e "$d/dm/name" ] && r dm "$(cat "$d/dm/name") uuid=$(cat "$d/dm/uuid") slaves=$(ls "$d/slaves" | tr '\n' ',')"; done
for l in /sys/block/loop*; do [ -e "$l/loop/backing_file" ] && r loop "${l##*/} diskseq=$(cat "$l/diskseq" 2>/dev/null) $(cat "$l/loop/backing_file")"; done
# Unit start/finish lines (monotonic time) of the merges, ours and systemd's.
each unit_time sh -c 'journalctl -b -o short-monotonic --no-pager -u ext-setup-root-pre.service -u systemd-confext-sysroot.service -u systemd-confext.service | grep -aE "Starting |Finished |Failed to start "'
each sysroot_journal journalctl -b -o cat -u systemd-confext-sysroot.service --no-pager
each failed systemctl --failed --plain --no-legend --no-pager
r system_state "$(systemctl is-system-running 2>&1)"
# sh, not exec: a confext /etc is mounted noexec, like systemd-confext's.
for h in /etc/extsr/check.d/*; do [ -f "$h" ] && sh "$h"; done
grep -qw extsr.debug /proc/cmdline && each journal journalctl -b -o short-monotonic --no-pager
r uptime "$(cut -d' ' -f1 /proc/uptime)"
r done 1
sync
if grep -qw extsr.clean /proc/cmdline; then
	systemctl poweroff --no-block
else
	systemctl poweroff -ff
fi
`

// reporterUnit starts the reporter once the system is up.
const reporterUnit = `[Unit]
Description=ext-setup-root QEMU test reporter
# After multi-user.target: report on the fully booted system, including
# services an extension enabled.
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/libexec/extsr-report
StandardOutput=tty
TTYPath=/dev/console

[Install]
WantedBy=multi-user.target
`

// oemServiceUnit is shipped inside the OEM sysext and enabled through a
// .wants link in the same image; the reporter checks it ran.
const oemServiceUnit = `[Unit]
Description=OEM test service shipped in the OEM sysext

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo ran >/run/oem-test-service'
`

// lateStopUnit is a unit that stops late in a clean shutdown: like many
// early-boot services it is ordered only against local-fs.target and
// sysinit.target, so nothing orders it against systemd-confext.service, and
// its ExecStop takes two seconds before it looks at /etc. It prints whether
// the default confext's file is still visible at that point.
const lateStopUnit = `[Unit]
Description=ext-setup-root QEMU test: late-stopping unit
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/bin/sh -c 'sleep 2; if [ -e /etc/extsr/default.conf ]; then v=present; else v=missing; fi; echo "EXTSR-RESULT late_stop_default_conf=$v" >/dev/console'

[Install]
WantedBy=sysinit.target
`
