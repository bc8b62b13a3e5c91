package abslots

// setupFaults arms the fault-injection points of root when it supports them
// (rootfs counts every side-effect step; EXT_SETUP_ROOT_KILL_AT_STEP=N
// kills the process at step N for crash tests).
func setupFaults(root FS, getenv func(string) string) {
	if f, ok := root.(interface{ FaultFromEnv(func(string) string) }); ok {
		f.FaultFromEnv(getenv)
	}
}
