package systemd262

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestNewRootSlotsNeverCollide: slots are unique names, so a Work that
// already holds another run's t1, t2 (the names the counter used to give
// every process) gives new slots and leaves those untouched.
func TestNewRootSlotsNeverCollide(t *testing.T) {
	e := &Env{Chroot: t.TempDir()}
	e.Work = filepath.Join(e.Chroot, "mnt")
	for _, n := range []string{"t1", "t2"} {
		testutil.WriteTree(t, e.Work, map[string]string{n + "/root/other-run": "x"})
	}
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		r, cleanup, err := e.NewRoot("")
		if err != nil {
			t.Fatalf("NewRoot beside another run's slots: %v", err)
		}
		defer cleanup()
		if seen[r.Slot] || filepath.Dir(r.Slot) != e.Work {
			t.Fatalf("slot %s reused or outside %s", r.Slot, e.Work)
		}
		seen[r.Slot] = true
		if want := "/mnt/" + filepath.Base(r.Slot) + "/root"; r.In != want {
			t.Fatalf("In = %s, want %s", r.In, want)
		}
	}
	for _, n := range []string{"t1", "t2"} {
		if _, err := os.Stat(filepath.Join(e.Work, n, "root/other-run")); err != nil {
			t.Fatalf("another run's slot %s touched: %v", n, err)
		}
	}
}

// TestWorkPrivateToProcess: the scratch tmpfs at the chroot's /mnt is
// mounted in this test process's own mount namespace, so concurrent test
// processes (go test runs packages in parallel) each see their own and
// none of it reaches the host's namespace (pid 1's).
func TestWorkPrivateToProcess(t *testing.T) {
	e := sdEnv(t)
	own := MountsAt(e.Work)
	if len(own) == 0 || own[len(own)-1].FSType != "tmpfs" {
		t.Fatalf("%s is not a tmpfs of this process: %+v", e.Work, own)
	}
	f, err := os.Open("/proc/1/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fl := strings.Fields(sc.Text()); len(fl) > 4 && unescapeMountinfo(fl[4]) == e.Work {
			t.Fatalf("%s is mounted in the host's namespace too: %s", e.Work, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}
