package paths

import "testing"

func TestLoadOverrides(t *testing.T) {
	old := StateDir
	defer func() { StateDir = old }()
	Load(func(k string) string {
		if k == "EXT_SETUP_ROOT_STATE_DIR" {
			return "/tmp/x"
		}
		return ""
	})
	if StateDir != "/tmp/x" {
		t.Fatalf("StateDir = %q, want /tmp/x", StateDir)
	}
	if ProcCmdline != "/proc/cmdline" {
		t.Fatalf("unset override changed ProcCmdline to %q", ProcCmdline)
	}
}
