//go:build testhooks

package extension

// NoBeneathEnv forces the unmount-then-mount fallback in the test-hooks
// build (the QEMU and fault tests set it where they cannot pass
// --no-beneath, e.g. to a boot stage).
const NoBeneathEnv = "EXT_SETUP_ROOT_NO_BENEATH"

func envNoBeneath(getenv func(string) string) bool { return getenv(NoBeneathEnv) == "1" }
