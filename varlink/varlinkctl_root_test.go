package varlink

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/test/systemd262"
)

// The root tier: systemd 262's own client, varlinkctl, from the Debian
// forky chroot (make systemd262-root) calls our server, which systemd
// 262's systemd-socket-activate starts per connection exactly as
// systemd-sysext.socket does (Accept=yes, FileDescriptorName=varlink).

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

// chrootEnv gates t on root, the chroot and the image tools.
func chrootEnv(t *testing.T) *systemd262.Env {
	t.Helper()
	return systemd262.Require(t, "mksquashfs", "mkfs.erofs")
}

// inChroot is the chroot-side path of host path p (below e.Chroot).
func inChroot(e *systemd262.Env, p string) string {
	return "/" + strings.TrimPrefix(strings.TrimPrefix(p, e.Chroot), "/")
}

// chrootCmd is a command run inside the chroot.
func chrootCmd(e *systemd262.Env, env []string, argv ...string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_COLORS=0"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: e.Chroot}
	return cmd
}

// serveSocket starts systemd-socket-activate --accept in the chroot on a
// new socket below e.Work, spawning argv (chroot paths) per connection
// with env; it returns the socket's chroot-side path and its host path.
// Its log goes to the test log at cleanup.
func serveSocket(t *testing.T, e *systemd262.Env, env []string, argv ...string) (string, string) {
	t.Helper()
	dir, err := os.MkdirTemp(e.Work, "vl")
	if err != nil {
		t.Fatal(err)
	}
	return serveSocketAt(t, e, filepath.Join(dir, "io.systemd.sysext"), env, argv...)
}

// serveSocketAt is serveSocket on the socket at host path host; the
// socket is removed at cleanup.
func serveSocketAt(t *testing.T, e *systemd262.Env, host string, env []string, argv ...string) (string, string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(host) })
	args := []string{"/usr/bin/systemd-socket-activate", "--accept", "-l", inChroot(e, host), "--fdname=varlink"}
	for _, v := range env {
		args = append(args, "-E", v)
	}
	cmd := chrootCmd(e, nil, append(args, argv...)...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		t.Logf("%s log:\n%s", argv[0], log.String())
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(host); err == nil {
			break
		}
		if i > 200 {
			t.Fatalf("socket %s not created: %s", host, log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return inChroot(e, host), host
}

// serveOurs builds our binary into the chroot and serves `ext-setup-root
// varlink --root=ROOT` on a new socket.
func serveOurs(t *testing.T, e *systemd262.Env, r systemd262.Root) (string, string) {
	t.Helper()
	return serveOursEnv(t, e, r, nil, false)
}

// serveOursEnv is serveOurs with env added to the server's environment.
// With notifySocket, the socket is systemd-sysupdate-notify-sysext.socket's,
// /run/systemd/sysupdate/notify/io.systemd.sysext in the chroot.
func serveOursEnv(t *testing.T, e *systemd262.Env, r systemd262.Root, env []string, notifySocket bool) (string, string) {
	t.Helper()
	// EXT_SETUP_ROOT_NO_BENEATH (the control's forced fallback) is
	// honoured only by the testhooks build.
	name, build := "ext-setup-root", testutil.BuildBinary
	for _, kv := range env {
		if strings.HasPrefix(kv, "EXT_SETUP_ROOT_NO_BENEATH=") {
			name, build = "ext-setup-root-testhooks", testutil.BuildTestHooksBinary
		}
	}
	bin := filepath.Join(e.Work, name)
	if _, err := os.Stat(bin); err != nil {
		b, err := os.ReadFile(build(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	state := inChroot(e, filepath.Join(r.Slot, "ext-setup-root-state"))
	sock := filepath.Join(r.Slot, "io.systemd.sysext")
	if notifySocket {
		sock = filepath.Join(e.Chroot, "run/systemd/sysupdate/notify/io.systemd.sysext")
	}
	return serveSocketAt(t, e, sock, append([]string{"EXT_SETUP_ROOT_STATE_DIR=" + state, "EXT_SETUP_ROOT_LOG=stderr"}, env...),
		inChroot(e, bin), "varlink", "--root="+r.In)
}

// varlinkctl runs systemd 262's varlinkctl in the chroot.
func varlinkctl(t *testing.T, e *systemd262.Env, args ...string) (string, int) {
	t.Helper()
	cmd := chrootCmd(e, nil, append([]string{"/usr/bin/varlinkctl"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("varlinkctl %q: %v", args, err)
	}
	return string(out), code
}

// newRoot builds a Flatcar-like root (/etc as the upper dir) with a
// directory, a squashfs and an erofs confext, on the chroot's tmpfs.
func newRoot(t *testing.T, e *systemd262.Env) systemd262.Root {
	t.Helper()
	r, cleanup, err := e.NewRoot("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	f := systemd262.Fixture{Layout: systemd262.LayoutSymlink, Images: systemd262.StandardImages()}
	if err := f.Build(r.Host); err != nil {
		t.Fatal(err)
	}
	return r
}

// addConfext writes a directory confext name into the root's
// /var/lib/confexts, with etc/NAME.conf.
func addConfext(t *testing.T, r systemd262.Root, name string) {
	t.Helper()
	testutil.WriteTree(t, filepath.Join(r.Host, "var/lib/confexts", name), map[string]string{
		"etc/extension-release.d/extension-release." + name: "ID=_any\n",
		"etc/" + name + ".conf":                             name + "\n",
	})
}

// TestVarlinkctlCallsOurService: systemd 262's varlinkctl drives every
// method of our server, and its error cases.
func TestVarlinkctlCallsOurService(t *testing.T) {
	e := chrootEnv(t)
	r := newRoot(t, e)
	sock, _ := serveOurs(t, e, r)
	addr := "unix:" + sock
	call := func(method, params string, more bool) (string, int) {
		args := []string{"call"}
		if more {
			args = append(args, "--more")
		}
		return varlinkctl(t, e, append(args, addr, "io.systemd.sysext."+method, params)...)
	}

	out, code := call("List", `{"class":"confext"}`, true)
	for _, want := range []string{`"Name":"dir1","Path":"` + r.In + `/var/lib/confexts/dir1"`, `"Type":"raw","Class":"confext","Name":"er1"`, `"Name":"sq1"`, `"LimitExclusive":`} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("List: exit %d, output lacks %s:\n%s", code, want, out)
		}
	}
	if out, code := call("List", `{}`, true); code == 0 || !strings.Contains(out, "io.systemd.sysext.NoImagesFound") {
		t.Errorf("List of sysexts (none): exit %d\n%s", code, out)
	}
	if out, code := call("List", `{"class":"confext"}`, false); code == 0 || !strings.Contains(out, "'more' flag") {
		t.Errorf("List without --more: exit %d\n%s", code, out)
	}

	if out, code := call("Merge", `{"class":"confext","noReload":true}`, false); code != 0 {
		t.Fatalf("Merge: exit %d\n%s", code, out)
	}
	for _, f := range []string{"dir1.conf", "sq1.conf", "er1.conf", "upper.conf"} {
		if _, err := os.Stat(filepath.Join(r.Host, "etc", f)); err != nil {
			t.Errorf("after Merge: %v", err)
		}
	}
	out, code = call("Merge", `{"class":"confext","noReload":true}`, false)
	if code == 0 || !strings.Contains(out, "io.systemd.sysext.AlreadyMerged") || !strings.Contains(out, `{"hierarchy":"/etc"}`) {
		t.Errorf("second Merge: exit %d, want AlreadyMerged for /etc:\n%s", code, out)
	}

	id0, err := systemd262.UniqueMountID(filepath.Join(r.Host, "etc"))
	if err != nil {
		testutil.Gate(t, "mount id of /etc: %v", err)
	}
	if out, code := call("Refresh", `{"class":"confext","noReload":true}`, false); code != 0 {
		t.Fatalf("unchanged Refresh: exit %d\n%s", code, out)
	}
	if id, _ := systemd262.UniqueMountID(filepath.Join(r.Host, "etc")); id != id0 {
		t.Errorf("an unchanged Refresh remounted /etc (mount id %d -> %d)", id0, id)
	}
	addConfext(t, r, "new1")
	if out, code := call("Refresh", `{"class":"confext","noReload":true}`, false); code != 0 {
		t.Fatalf("Refresh: exit %d\n%s", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(r.Host, "etc/new1.conf")); err != nil || string(b) != "new1\n" {
		t.Errorf("after Refresh with a new confext: %q, %v", b, err)
	}
	if id, _ := systemd262.UniqueMountID(filepath.Join(r.Host, "etc")); id == id0 {
		t.Errorf("Refresh with a new confext did not replace the merge")
	}

	for _, tc := range []struct{ method, params, want string }{
		{"Merge", `{"class":"bogus"}`, `{"parameter":"class"}`},
		{"Refresh", `{"class":"confext","alwaysRefresh":"yes"}`, `{"parameter":"alwaysRefresh"}`},
		{"Unmerge", `{"class":"confext","what":1}`, `{"parameter":"what"}`},
		{"Nope", `{}`, `{"method":"io.systemd.sysext.Nope"}`},
	} {
		if out, code := call(tc.method, tc.params, false); code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%s %s: exit %d, want %s:\n%s", tc.method, tc.params, code, tc.want, out)
		}
	}

	if out, code := call("Unmerge", `{"class":"confext","noReload":true}`, false); code != 0 {
		t.Fatalf("Unmerge: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(r.Host, "etc/dir1.conf")); err == nil {
		t.Errorf("dir1.conf still in /etc after Unmerge")
	}
	if _, err := os.Stat(filepath.Join(r.Host, "etc/upper.conf")); err != nil {
		t.Errorf("upper /etc lost by Unmerge: %v", err)
	}
	// The notify callout refreshes both classes: the confexts are merged
	// again (no sysexts: nothing to do for them).
	out, code = varlinkctl(t, e, "call", addr, "io.systemd.SysUpdate.Notify.OnCompletedUpdate", `{"component":"x","version":"2"}`)
	if _, err := os.Stat(filepath.Join(r.Host, "etc/new1.conf")); code != 0 || err != nil {
		t.Errorf("OnCompletedUpdate: exit %d, new1.conf: %v\n%s", code, err, out)
	}
}

// TestVarlinkRefreshWindow measures /etc while varlinkctl's Refresh
// applies a change, 20 times (a confext added or removed before each, and
// checked in /etc after each): the project's stat probe over a confext
// file and an upper /etc file must see 0 failed stats. The control serves
// the same calls with the engine forced to its unmount-then-mount fallback
// (EXT_SETUP_ROOT_NO_BENEATH=1 to the testhooks build, the way
// systemd-sysext refreshes): the
// probe must catch that gap, or it proves nothing.
func TestVarlinkRefreshWindow(t *testing.T) {
	e := chrootEnv(t)
	res := refreshWindow(t, e, nil)
	if res.Failures() != 0 {
		t.Errorf("%d failed stats during the Varlink refreshes, want 0", res.Failures())
	}
	ctl := refreshWindow(t, e, []string{"EXT_SETUP_ROOT_NO_BENEATH=1"})
	if ctl.Failures() == 0 {
		t.Errorf("control (unmount-then-mount): the probe saw no failed stat; it cannot tell a gap")
	}
}

// refreshWindow runs 20 changing Varlink refreshes of a new root under
// the stat probe, with env added to our server's environment.
func refreshWindow(t *testing.T, e *systemd262.Env, env []string) systemd262.WindowResult {
	t.Helper()
	r := newRoot(t, e)
	sock, _ := serveOursEnv(t, e, r, env, false)
	addr := "unix:" + sock
	refresh := func() error {
		out, code := varlinkctl(t, e, "call", addr, "io.systemd.sysext.Refresh", `{"class":"confext","noReload":true}`)
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, out)
		}
		return nil
	}
	if err := refresh(); err != nil {
		t.Fatal(err)
	}
	toggle := filepath.Join(r.Host, "var/lib/confexts/90-toggle")
	var failures []error
	res := systemd262.Probe(fmt.Sprintf("varlinkctl Refresh (ext-setup-root %v)", env),
		[]string{filepath.Join(r.Host, "etc/sq1.conf"), filepath.Join(r.Host, "etc/upper.conf")}, 20,
		func(i int) error {
			add := i%2 == 0
			if add {
				addConfext(t, r, "90-toggle")
			} else if err := os.RemoveAll(toggle); err != nil {
				return err
			}
			err := refresh()
			if _, serr := os.Stat(filepath.Join(r.Host, "etc/90-toggle.conf")); err == nil && (serr == nil) != add {
				err = fmt.Errorf("refresh %d: 90-toggle.conf in /etc: %v, want %v", i, serr == nil, add)
			}
			if err != nil {
				failures = append(failures, err)
			}
			return err
		})
	t.Logf("%s", res)
	for _, p := range res.Probes {
		t.Logf("probe %s: %d stats, %d failed, errors %v", p.Path, p.Stats, p.Failures, p.Errors)
		if p.Stats < 100 {
			t.Errorf("probe %s made only %d stats: not measuring", p.Path, p.Stats)
		}
	}
	if res.CmdFailures != 0 {
		t.Errorf("%d Refresh calls failed or did not apply their change: %v", res.CmdFailures, failures)
	}
	return res
}

// rawCall sends one raw message and returns the raw reply ("" when the
// server closed the connection without one).
func rawCall(t *testing.T, hostSock, msg string) string {
	t.Helper()
	c, err := net.Dial("unix", hostSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg + "\x00")); err != nil {
		t.Fatal(err)
	}
	rep, _ := bufio.NewReader(c).ReadString(0)
	return rep
}

// TestRawRepliesMatchSystemd262: byte for byte the same replies as systemd
// 262's own systemd-sysext for calls whose answer does not depend on the
// machine's merges (parameter checks, unknown methods, protocol errors,
// introspection errors).
func TestRawRepliesMatchSystemd262(t *testing.T) {
	e := chrootEnv(t)
	r := newRoot(t, e)
	_, ours := serveOurs(t, e, r)
	_, theirs := serveSocket(t, e, nil, "/usr/bin/systemd-sysext")
	for _, msg := range []string{
		`{"method":"io.systemd.sysext.Merge","parameters":{"class":"confext","bogus":1}}`,
		`{"method":"io.systemd.sysext.Merge","parameters":{"class":"confext","force":"x"}}`,
		`{"method":"io.systemd.sysext.Merge","parameters":{"class":null}}`,
		`{"method":"io.systemd.sysext.Refresh","parameters":{"noexec":null}}`,
		`{"method":"io.systemd.sysext.Unmerge","parameters":{"class":"confext","class":"sysext"}}`,
		`{"method":"io.systemd.sysext.List"}`,
		`{"method":"io.systemd.sysext.List","parameters":{"class":"bogus"},"more":true}`,
		`{"method":"io.systemd.sysext.Foo"}`,
		`{"method":"io.systemd.Foo.Bar"}`,
		`{"method":"io.systemd.SysUpdate.Notify.OnCompletedUpdate","parameters":{"foo":1}}`,
		`{"method":"org.varlink.service.GetInfo","parameters":{"x":1}}`,
		`{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"foo"}}`,
		`{"method":"io.systemd.sysext.Unmerge","parameters":{"class":"confext"},"bogus":1}`,
		`{"method":"io.systemd.sysext.Unmerge","parameters":[]}`,
		`{"method":"io.systemd.sysext.List","more":true,"oneway":true}`,
		`not json`,
		`{"method":5}`,
	} {
		want, got := rawCall(t, theirs, msg), rawCall(t, ours, msg)
		if got != want {
			t.Errorf("%s:\n ours    %q\n systemd %q", msg, got, want)
		}
	}
}

// TestIntrospectMatchesSystemd262: varlinkctl introspect of our server
// and of systemd 262's systemd-sysext define the same methods, types and
// errors for io.systemd.sysext and io.systemd.SysUpdate.Notify (comments
// aside), and varlinkctl validates our IDL.
func TestIntrospectMatchesSystemd262(t *testing.T) {
	e := chrootEnv(t)
	r := newRoot(t, e)
	ours, _ := serveOurs(t, e, r)
	for _, iface := range []string{"io.systemd.sysext", "io.systemd.SysUpdate.Notify", "io.systemd"} {
		got, code := varlinkctl(t, e, "introspect", "unix:"+ours, iface)
		if code != 0 {
			t.Fatalf("introspect ours %s: exit %d\n%s", iface, code, got)
		}
		want, code := varlinkctl(t, e, "introspect", "exec:/usr/bin/systemd-sysext", iface)
		if code != 0 {
			t.Fatalf("introspect systemd-sysext %s: exit %d\n%s", iface, code, want)
		}
		if g, w := stripComments(got), stripComments(want); g != w {
			t.Errorf("%s differs from systemd 262's:\n--- ours\n%s\n--- systemd\n%s", iface, g, w)
		}
	}
	info, code := varlinkctl(t, e, "info", "unix:"+ours)
	if code != 0 || !strings.Contains(info, "io.systemd.sysext") || !strings.Contains(info, "io.systemd.SysUpdate.Notify") {
		t.Errorf("info: exit %d\n%s", code, info)
	}
}

// stripComments drops comment and empty lines of an IDL text.
func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// TestSysupdateCalloutRefreshes: systemd 262's systemd-sysupdate installs
// version 2 of a versioned confext (foo.raw.v/foo_2.raw) and calls
// io.systemd.SysUpdate.Notify.OnCompletedUpdate on every socket in
// /run/systemd/sysupdate/notify/, where our server listens as
// systemd-sysupdate-notify-sysext.socket does: the callout's refresh puts
// version 2 into /etc, atomically (a new /etc mount, the old content
// until then).
func TestSysupdateCalloutRefreshes(t *testing.T) {
	e := chrootEnv(t)
	r := newRoot(t, e)
	src := filepath.Join(e.Work, "sysupdate-src")
	for _, v := range []string{"1", "2"} {
		tree := t.TempDir()
		testutil.WriteTree(t, tree, map[string]string{
			"etc/extension-release.d/extension-release.foo": "ID=_any\n",
			"etc/foo.conf": "v" + v + "\n",
		})
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		testutil.MakeSquashfs(t, tree, filepath.Join(src, "foo_"+v+".raw"))
	}
	target := filepath.Join(r.Host, "var/lib/confexts/foo.raw.v")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, "foo_1.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "foo_1.raw"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	defs := filepath.Join(e.Work, "sysupdate.d")
	testutil.WriteTree(t, defs, map[string]string{"50-foo.transfer": "[Transfer]\nVerify=no\n\n[Source]\nType=regular-file\nPath=" +
		inChroot(e, src) + "\nMatchPattern=foo_@v.raw\n\n[Target]\nType=regular-file\nPath=" + inChroot(e, target) +
		"\nMatchPattern=foo_@v.raw\nInstancesMax=2\n"})

	sock, _ := serveOursEnv(t, e, r, nil, true)
	if out, code := varlinkctl(t, e, "call", "unix:"+sock, "io.systemd.sysext.Merge", `{"class":"confext","noReload":true}`); code != 0 {
		t.Fatalf("Merge: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(filepath.Join(r.Host, "etc/foo.conf")); string(b) != "v1\n" {
		t.Fatalf("before the update: foo.conf %q, want v1", b)
	}
	id0, err := systemd262.UniqueMountID(filepath.Join(r.Host, "etc"))
	if err != nil {
		testutil.Gate(t, "mount id of /etc: %v", err)
	}
	cmd := chrootCmd(e, []string{"SYSTEMD_LOG_LEVEL=debug"}, "/usr/lib/systemd/systemd-sysupdate", "--definitions="+inChroot(e, defs), "update")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysupdate update: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "io.systemd.SysUpdate.Notify.OnCompletedUpdate") {
		t.Errorf("systemd-sysupdate did not call the notify socket:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(r.Host, "etc/foo.conf")); string(b) != "v2\n" {
		t.Errorf("after the update and its callout: foo.conf %q, want v2\nsysupdate:\n%s", b, out)
	}
	if id, _ := systemd262.UniqueMountID(filepath.Join(r.Host, "etc")); id == id0 {
		t.Errorf("the callout did not replace the /etc merge")
	}
}
