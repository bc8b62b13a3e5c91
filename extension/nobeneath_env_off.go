//go:build !testhooks

package extension

// envNoBeneath is always false in the production binary:
// EXT_SETUP_ROOT_NO_BENEATH is honoured only by the -tags testhooks build
// (nobeneath_env_on.go), so a variable in a unit's or the initrd's
// environment cannot open the gap of the fallback on a kernel that has
// MOVE_MOUNT_BENEATH. --no-beneath still does.
func envNoBeneath(func(string) string) bool { return false }
