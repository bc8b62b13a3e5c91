//go:build !testhooks

package main

// armTestHooks does nothing in the production binary: the fault-injection
// variables (EXT_SETUP_ROOT_KILL_AT_STEP, EXT_SETUP_ROOT_STEP_LOG,
// EXT_SETUP_ROOT_FAIL_AT_STEP) and the redirections of system paths
// (paths.LoadTestOverrides) are ignored. testhooks_on.go arms both in the
// binary that make test builds with -tags testhooks.
func armTestHooks() {}
