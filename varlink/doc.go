// Package varlink serves systemd 262's Varlink interface io.systemd.sysext
// (Merge, Unmerge, Refresh, List) and io.systemd.SysUpdate.Notify
// (OnCompletedUpdate, systemd-sysupdate's callout after an update) with
// ext-setup-root's extension engine, so that `varlinkctl call
// /run/systemd/io.systemd.sysext io.systemd.sysext.Refresh` and sysupdate's
// notification get the atomic refresh (new merge mounted beneath the old
// one), the hierarchy lock and boot.toml's image policy instead of
// systemd-sysext's unmerge-then-merge.
//
// systemd 262 activates systemd-sysext@.service per connection
// (systemd-sysext.socket and systemd-sysupdate-notify-sysext.socket,
// Accept=yes); the host drop-ins make those instances run `ext-setup-root
// varlink`, which serves the connected descriptor it is handed.
//
// The protocol layer (wire.go, server.go) is small and written here rather
// than taken from github.com/varlink/go: that library serves listening
// sockets only (systemd hands over one accepted connection per instance),
// reads a message without any size bound, and wants generated code per
// interface. Ours bounds every message (MaxMessage), answers exactly what
// sd-varlink answers for malformed calls (checked against systemd 262's
// own systemd-sysext) and is fuzzed (FuzzReadCall, FuzzServe).
package varlink
