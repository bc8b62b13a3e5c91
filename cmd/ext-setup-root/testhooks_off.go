//go:build !testhooks

package main

// armTestHooks does nothing in the production binary: the fault-injection
// variables (EXT_SETUP_ROOT_KILL_AT_STEP, EXT_SETUP_ROOT_STEP_LOG,
// EXT_SETUP_ROOT_FAIL_AT_STEP) are ignored. testhooks_on.go arms them in
// the binary that make test builds with -tags testhooks.
func armTestHooks() {}
