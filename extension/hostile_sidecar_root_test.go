package extension

// Regression test of issue 14 item 5, root tier: a FIFO or a character
// device planted as an image's .roothash sidecar. Before the bounded
// reader (rootfs.ReadRegular) the FIFO blocked `confext merge` forever
// while it held the hierarchy lock, and /dev/zero's twin (1:5) was read
// until the process ran out of memory.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// rssLimit is the resident size at which a merge counts as reading
// without bound (a merge of two small images needs a few MiB).
const rssLimit = 256 << 20

// runBounded runs cmd for at most timeout, killing it and reporting why
// when it is still running then or when its resident size passes
// rssLimit.
func runBounded(t *testing.T, cmd *exec.Cmd, timeout time.Duration) (string, error) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return out.String(), err
		case <-deadline:
			cmd.Process.Kill()
			<-done
			return out.String(), fmt.Errorf("still running after %v (killed): %w", timeout, context.DeadlineExceeded)
		case <-tick.C:
			if rss := rssOf(cmd.Process.Pid); rss > rssLimit {
				cmd.Process.Kill()
				<-done
				return out.String(), fmt.Errorf("resident size %d MiB passed %d MiB (killed): unbounded read", rss>>20, rssLimit>>20)
			}
		}
	}
}

// rssOf is pid's VmRSS in bytes (0 when unknown).
func rssOf(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestHostileSidecar (issue 14 item 5): with a FIFO or a character device
// 1:5 as extra.roothash, or a FIFO as extra.verity, next to extra.raw, `confext merge` finishes, skips
// extra with an error naming the sidecar and the rule, merges the good
// image, and leaves the hierarchy lock free (an unmerge right after does
// not wait).
func TestHostileSidecar(t *testing.T) {
	bin := testutil.BuildBinary(t)
	for _, tc := range []struct{ kind, sidecar, want string }{
		{"fifo", "extra.roothash", "a FIFO"},
		{"chardev-1:5", "extra.roothash", "a character device 1:5"},
		// The hash tree sidecar is opened by the dissection, not read
		// whole; a FIFO there blocked the open.
		{"fifo", "extra.verity", "a FIFO"},
	} {
		t.Run(tc.sidecar+"-"+tc.kind, func(t *testing.T) {
			r := testRoot(t, "symlink")
			rawImage(t, r, "squashfs", "good")
			rawImage(t, r, "squashfs", "extra")
			side := filepath.Join(r, "usr/lib/confexts", tc.sidecar)
			if tc.kind == "fifo" {
				must(t, unix.Mkfifo(side, 0o644))
			} else {
				must(t, unix.Mknod(side, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))))
			}
			env := append(os.Environ(), "EXT_SETUP_ROOT_STATE_DIR="+t.TempDir())
			call := func(verb string) (string, error) {
				cmd := exec.Command(bin, "confext", "--root="+r, "--mutable=yes", verb)
				cmd.Env = env
				return runBounded(t, cmd, 30*time.Second)
			}
			out, err := call("merge")
			if err != nil {
				t.Fatalf("merge: %v\n%s", err, out)
			}
			t.Logf("merge output:\n%s", out)
			if !strings.Contains(out, tc.sidecar+": is "+tc.want+", not a regular file") {
				t.Errorf("merge output does not name the sidecar and the rule (%q)", tc.want)
			}
			if _, err := os.Stat(filepath.Join(r, "etc/good.conf")); err != nil {
				t.Errorf("the good image is not merged: %v", err)
			}
			if _, err := os.Stat(filepath.Join(r, "etc/extra.conf")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the image with the hostile sidecar is merged: %v", err)
			}
			if out, err := call("unmerge"); err != nil {
				t.Fatalf("unmerge after the merge (lock released?): %v\n%s", err, out)
			}
		})
	}
}
