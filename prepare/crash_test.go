package prepare

import (
	"context"
	"os"
	"strconv"
	"syscall"
)

// crashChildEnv makes the test binary a crash child: it runs prepare on
// the root in crashRootEnv (default configuration less tmpfiles and OEM)
// and SIGKILLs itself at side effect number N (1-based).
const (
	crashChildEnv = "EXT_SETUP_ROOT_PREPARE_CRASH_AT"
	crashRootEnv  = "EXT_SETUP_ROOT_PREPARE_CRASH_ROOT"
)

func crashChild() {
	at := os.Getenv(crashChildEnv)
	if at == "" {
		return
	}
	n, _ := strconv.Atoi(at)
	count := 0
	faultHook = func(string) {
		count++
		if count == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	_, err := Run(context.Background(), Options{Root: os.Getenv(crashRootEnv), Config: diffConfig()})
	if err != nil {
		os.Exit(3)
	}
	os.Exit(0)
}
