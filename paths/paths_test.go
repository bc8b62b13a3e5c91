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

// TestSystemPathsTestOnly: the production Load ignores the redirections of
// system paths; only LoadTestOverrides (testhooks builds) applies them.
func TestSystemPathsTestOnly(t *testing.T) {
	old := ProcCmdline
	oldTrust, oldSock := TrustRoot, PCRExtendSocket
	defer func() { ProcCmdline, TrustRoot, PCRExtendSocket = old, oldTrust, oldSock }()
	env := func(k string) string {
		switch k {
		case "EXT_SETUP_ROOT_PROC_CMDLINE":
			return "/tmp/fake-cmdline"
		case "EXT_SETUP_ROOT_TRUST_ROOT":
			return "/tmp/fake-trust"
		case "EXT_SETUP_ROOT_PCREXTEND_SOCKET":
			return "/tmp/fake-pcrextend"
		}
		return ""
	}
	Load(env)
	if ProcCmdline != "/proc/cmdline" || TrustRoot != "/" || PCRExtendSocket != "/run/systemd/io.systemd.PCRExtend" {
		t.Fatalf("production Load redirected system paths: %q %q %q", ProcCmdline, TrustRoot, PCRExtendSocket)
	}
	LoadTestOverrides(env)
	if ProcCmdline != "/tmp/fake-cmdline" || TrustRoot != "/tmp/fake-trust" || PCRExtendSocket != "/tmp/fake-pcrextend" {
		t.Fatalf("LoadTestOverrides: %q %q %q", ProcCmdline, TrustRoot, PCRExtendSocket)
	}
}
