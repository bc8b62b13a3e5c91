//go:build testhooks

package main

import (
	"fmt"
	"os"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// armTestHooks installs the environment-driven fault hook (crash and
// fault-injection tests). Only a binary built with -tags testhooks has it.
func armTestHooks() {
	paths.LoadTestOverrides(os.Getenv) // system path redirections (package paths)
	if err := fault.ArmFromEnv(os.Getenv); err != nil {
		fmt.Fprintf(os.Stderr, "ext-setup-root: %v\n", err)
		os.Exit(2)
	}
}
