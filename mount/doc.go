// Package mount is the only package of ext-setup-root that issues mount
// system calls: the new mount API (fsopen, fsconfig, fsmount, move_mount,
// open_tree, mount_setattr), classic mount(2) for propagation changes,
// umount2, loop devices via LOOP_CONFIGURE, and mountinfo parsing.
//
// It holds no policy and does no logging: callers decide what to mount where
// and log the operation; every error is a *Error (or *os.PathError) that
// carries the operation and paths and unwraps to the errno, so
// errors.Is(err, unix.EBUSY) works.
//
// Mounts are built detached (a mount fd not yet attached anywhere) and then
// attached onto an O_PATH fd of the mount point that the caller resolved
// inside the target root (package rootfs), so no path string is trusted
// between the check and the mount.
package mount
