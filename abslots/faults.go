package abslots

import "sync"

// faultsOnce makes sure the fault hook is armed once per process: arming
// it again would restart rootfs's step counter in the middle of a run.
var faultsOnce sync.Once

// setupFaults arms the fault-injection points of root when it supports them
// (rootfs counts every side-effect step; EXT_SETUP_ROOT_KILL_AT_STEP=N
// kills the process at step N, EXT_SETUP_ROOT_STEP_LOG=FILE logs the
// steps, for crash tests). Without those variables nothing is armed. A
// caller that arms rootfs.FaultFromEnv itself should pass an Options.Getenv
// that returns "" for them.
func setupFaults(root FS, getenv func(string) string) {
	f, ok := root.(interface{ FaultFromEnv(func(string) string) })
	if !ok {
		return
	}
	faultsOnce.Do(func() { f.FaultFromEnv(getenv) })
}
