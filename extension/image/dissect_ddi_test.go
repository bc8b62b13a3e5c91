package image

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// Test DDIs are built with systemd-repart 262 in the forky chroot that
// scripts/prepare-systemd262.sh caches (with systemd-repart, openssl,
// mkfs.erofs and mksquashfs), once per test run (go test process) and
// variant, in a directory removed when the run ends.

type ddiSpec struct {
	Class  string // "confext" or "sysext"
	FS     string // "erofs" or "squashfs"
	Signed bool
	Arch   string // systemd-repart --architecture ("" = x86-64)
	Key    string // signing key name under the cache's verity-keys ("" = "dissect-test")
	// Split also writes each partition to its own file (systemd-repart
	// --split=yes): Path + ".root.raw", ".root-verity.raw", ...
	Split bool
}

type builtDDI struct {
	Path     string
	RootHash string // as systemd-repart reported it
	Cert     string // certificate file (signed images)
	Key      string
}

var (
	ddiOnce  sync.Mutex
	ddiCache = map[ddiSpec]*builtDDI{}
	ddiDir   string
)

func cacheBase() string {
	if b := os.Getenv("EXT_SETUP_ROOT_CACHE"); b != "" {
		return b
	}
	return "/var/cache/ext-setup-root"
}

// sd262Root returns the forky chroot, gated on what DDIs need.
func sd262Root(t testing.TB) string {
	t.Helper()
	root := filepath.Join(cacheBase(), "systemd262-root")
	for _, p := range []string{"usr/bin/systemd-repart", "usr/bin/openssl", "usr/bin/mkfs.erofs", "usr/bin/mksquashfs"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			testutil.Gate(t, "test DDIs need %s in the forky chroot (scripts/prepare-systemd262.sh): %v", p, err)
		}
	}
	testutil.RequireRoot(t)
	return root
}

// chrootRun runs argv in the chroot with work bound at /run/dissect-work.
// It runs in a child mount namespace (unshare) so nothing leaks into the
// test process.
func chrootRun(t testing.TB, work string, env []string, argv ...string) string {
	t.Helper()
	root := sd262Root(t)
	script := `set -e
root="$1"; work="$2"; shift 2
mount --make-rprivate /
for d in proc sys dev; do mount --rbind /$d "$root/$d"; done
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/var/tmp"
mkdir -p "$root/run/dissect-work"
mount --bind "$work" "$root/run/dissect-work"
exec chroot "$root" "$@"`
	args := append([]string{"--mount", "sh", "-c", script, "sh", root, work, "env", "-i", "PATH=/usr/sbin:/usr/bin"}, env...)
	args = append(args, argv...)
	cmd := exec.Command("unshare", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("in chroot: %s: %v\n%s%s", strings.Join(argv, " "), err, out, stderr.String())
	}
	return string(out)
}

func runDirTemp(t testing.TB) string {
	ddiOnce.Lock()
	defer ddiOnce.Unlock()
	if ddiDir == "" {
		// One directory per test process; those of processes that are
		// gone (earlier runs) are removed first.
		old, _ := filepath.Glob(filepath.Join(os.TempDir(), "dissect-ddi-*"))
		for _, o := range old {
			var pid int
			if _, err := fmt.Sscanf(filepath.Base(o), "dissect-ddi-%d", &pid); err == nil && unix.Kill(pid, 0) == unix.ESRCH {
				os.RemoveAll(o)
			}
		}
		d := filepath.Join(os.TempDir(), fmt.Sprintf("dissect-ddi-%d", os.Getpid()))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		// In the tests' private mount namespace a tmpfs holds the run's
		// images: they vanish with the namespace when the run ends, and
		// only the empty directory is left for the next run to remove.
		if testutil.InPrivateMountNS() {
			if err := unix.Mount("tmpfs", d, "tmpfs", 0, "mode=0755"); err != nil {
				t.Fatal(err)
			}
		}
		ddiDir = d
	}
	return ddiDir
}

// testKey returns a signing key pair (created once per run with the
// chroot's openssl; days < 0 makes an already expired certificate).
func testKey(t testing.TB, name string, days int) (key, cert string) {
	t.Helper()
	dir := filepath.Join(runDirTemp(t), "keys")
	key, cert = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".crt")
	if _, err := os.Stat(cert); err == nil {
		return key, cert
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	args := []string{"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dissect test " + name,
		"-keyout", "/run/dissect-work/k.pem", "-out", "/run/dissect-work/c.crt"}
	if days < 0 {
		// Valid from 2000 to 2001: expired.
		args = append(args, "-not_before", "20000101000000Z", "-not_after", "20010101000000Z")
	} else {
		args = append(args, "-days", "3650")
	}
	chrootRun(t, work, nil, args...)
	for _, p := range [][2]string{{"k.pem", key}, {"c.crt", cert}} {
		b, err := os.ReadFile(filepath.Join(work, p[0]))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return key, cert
}

// buildDDI builds (once per run) a DDI of spec with systemd-repart.
func buildDDI(t testing.TB, s ddiSpec) *builtDDI {
	t.Helper()
	root := sd262Root(t)
	dir := runDirTemp(t)
	ddiOnce.Lock()
	if b, ok := ddiCache[s]; ok {
		ddiOnce.Unlock()
		return b
	}
	ddiOnce.Unlock()
	if s.Key == "" {
		s.Key = "dissect-test"
	}
	key, cert := "", ""
	if s.Signed {
		days := 1
		if strings.HasPrefix(s.Key, "expired") {
			days = -1
		}
		key, cert = testKey(t, s.Key, days)
	}
	work := t.TempDir()
	tree := filepath.Join(work, "tree")
	name := "dissect-" + s.Class + "-" + s.FS
	var relDir, payload string
	if s.Class == "confext" {
		relDir, payload = "etc/extension-release.d", "etc/dissect-test.conf"
	} else {
		relDir, payload = "usr/lib/extension-release.d", "usr/lib/dissect-test/data"
	}
	for p, c := range map[string]string{filepath.Join(relDir, "extension-release."+name): "ID=_any\n", payload: "payload of " + name + "\n"} {
		if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defs := filepath.Join(work, "defs")
	if err := os.MkdirAll(defs, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "usr/lib/systemd/repart/definitions", s.Class+".repart.d")
	confs := []string{"10-root.conf", "20-root-verity.conf"}
	if s.Signed {
		confs = append(confs, "30-root-verity-sig.conf")
	}
	for _, f := range confs {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		c := strings.ReplaceAll(string(b), "Format=erofs", "Format="+s.FS)
		if s.Split {
			c = strings.Replace(c, "[Partition]\n", "[Partition]\nSplitName=%t\n", 1)
		}
		if err := os.WriteFile(filepath.Join(defs, f), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"systemd-repart", "--definitions=/run/dissect-work/defs", "--copy-source=/run/dissect-work/tree",
		"--empty=create", "--size=auto", "--dry-run=no", "--json=short", "--seed=0f3ac6a2-4a1e-4b8e-9d0c-5c2f1e7a9b11"}
	if s.Arch != "" {
		args = append(args, "--architecture="+s.Arch)
	}
	if s.Split {
		args = append(args, "--split=yes")
	}
	if s.Signed {
		for _, p := range [][2]string{{key, "key.pem"}, {cert, "cert.crt"}} {
			b, err := os.ReadFile(p[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(work, p[1]), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		args = append(args, "--private-key=/run/dissect-work/key.pem", "--certificate=/run/dissect-work/cert.crt")
	}
	args = append(args, "/run/dissect-work/out.raw")
	out := chrootRun(t, work, []string{"SOURCE_DATE_EPOCH=1700000000", "SYSTEMD_LOG_LEVEL=warning"}, args...)
	var parts []map[string]any
	js := out
	if i := strings.LastIndex(out, "\n[{"); i >= 0 {
		js = out[i+1:]
	}
	if err := json.Unmarshal([]byte(js), &parts); err != nil {
		t.Fatalf("repart JSON: %v\n%s", err, out)
	}
	b := &builtDDI{Cert: cert, Key: key}
	for _, p := range parts {
		if h, ok := p["roothash"].(string); ok && h != "" && h != "-" {
			b.RootHash = h
		}
	}
	if b.RootHash == "" {
		t.Fatalf("repart reported no root hash:\n%s", out)
	}
	b.Path = filepath.Join(dir, strings.Join([]string{s.Class, s.FS, map[bool]string{true: "signed", false: "unsigned"}[s.Signed], s.Arch, s.Key, map[bool]string{true: "split", false: ""}[s.Split]}, "-")+".raw")
	if s.Split {
		ents, _ := os.ReadDir(work)
		for _, e := range ents {
			n := e.Name()
			if !strings.HasPrefix(n, "out.") || n == "out.raw" {
				continue
			}
			d, err := os.ReadFile(filepath.Join(work, n))
			if err != nil {
				t.Fatal(err)
			}
			// out.root-x86-64-verity.raw -> <Path>.root-verity.raw
			part := strings.TrimSuffix(strings.TrimPrefix(n, "out."), ".raw")
			arch := s.Arch
			if arch == "" {
				arch = "x86-64"
			}
			part = strings.Replace(part, "-"+arch, "", 1)
			if err := os.WriteFile(b.Path+"."+part+".raw", d, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	data, err := os.ReadFile(filepath.Join(work, "out.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.Path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ddiOnce.Lock()
	ddiCache[s] = b
	ddiOnce.Unlock()
	return b
}
