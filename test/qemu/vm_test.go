package qemu

import "testing"

func TestEarlyKernelCrash(t *testing.T) {
	for _, c := range []struct {
		name  string
		lines []string
		want  bool
	}{
		{"panic before init", []string{"[ 2.7] RIP: sched_clock_tick", "[ 2.7] Kernel panic - not syncing: Fatal exception in interrupt"}, true},
		{"panic after init", []string{"[ 3.0] Run /init as init process", "[ 9.0] Kernel panic - not syncing: Attempted to kill init!"}, false},
		{"clean boot", []string{"[ 3.0] Run /init as init process", "EXTSR-RESULT uptime=20"}, false},
	} {
		if got := earlyKernelCrash(c.lines); got != c.want {
			t.Errorf("%s: earlyKernelCrash = %v, want %v", c.name, got, c.want)
		}
	}
}
