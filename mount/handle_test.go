package mount

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

func handleOpenPath(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// legacyMountID finds the mountinfo ID of the mount holding dir by
// matching st_dev and the longest mount point prefix.
func handleLegacyMountID(t *testing.T, dir string) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var best string
	var id uint64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		mp := f[4]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best = mp
			id, _ = strconv.ParseUint(f[0], 10, 64)
		}
	}
	return id
}

func TestNameToHandleAtFile(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if err := os.WriteFile(a, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fd := handleOpenPath(t, a)
	typ, h, mnt, unique, err := NameToHandleAt(fd, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) == 0 {
		t.Fatal("empty handle")
	}

	// Same inode through another name: same handle; other inode: different.
	typ2, h2, mnt2, _, err := NameToHandleAt(unix.AT_FDCWD, filepath.Join(dir, "hard"), 0)
	if err != nil || typ2 != typ || !bytes.Equal(h, h2) || mnt2 != mnt {
		t.Fatalf("hard link: %d %x %d %v, want %d %x %d", typ2, h2, mnt2, err, typ, h, mnt)
	}
	_, h3, _, _, err := NameToHandleAt(unix.AT_FDCWD, filepath.Join(dir, "b"), 0)
	if err != nil || bytes.Equal(h, h3) {
		t.Fatalf("other file: %x %v", h3, err)
	}

	// The mount ID agrees with statx.
	sid, sunique, err := StatxMountID(fd)
	if err != nil {
		t.Fatal(err)
	}
	if sid != mnt || sunique != unique {
		t.Errorf("statx mount id %d unique=%v, handle mount id %d unique=%v", sid, sunique, mnt, unique)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	if !unique {
		if legacy := handleLegacyMountID(t, dir); mnt != legacy {
			t.Errorf("legacy mount id %d, mountinfo says %d", mnt, legacy)
		}
		t.Logf("kernel %s gave only the legacy mount id", unix.ByteSliceToString(uts.Release[:]))
	} else if mnt < 1<<31 {
		// Unique mount IDs start above INT_MAX so they never collide with
		// legacy ones (golden origin files show 2147755565 and the like).
		t.Errorf("unique mount id %d below 2^31", mnt)
	}

	// On ext4 the handle is FILEID_INO32_GEN: inode (le32) + generation.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Type == unix.EXT4_SUPER_MAGIC {
		if typ != 1 || len(h) != 8 || binary.LittleEndian.Uint32(h) != uint32(st.Ino) {
			t.Errorf("ext4 handle type %d %x, want type 1 starting with inode %#x", typ, h, st.Ino)
		}
	}
}

func TestNameToHandleAtErrors(t *testing.T) {
	_, _, _, _, err := NameToHandleAt(unix.AT_FDCWD, filepath.Join(t.TempDir(), "missing"), 0)
	var pe *os.PathError
	if !errors.As(err, &pe) || !errors.Is(err, unix.ENOENT) || pe.Op != "name_to_handle_at" {
		t.Fatalf("err = %#v", err)
	}
	if !IsNameToHandleAtFatal(err) {
		t.Error("ENOENT must be fatal")
	}
	for _, e := range []unix.Errno{unix.EOPNOTSUPP, unix.EPERM, unix.EACCES, unix.EOVERFLOW, unix.EINVAL, unix.ENOSYS} {
		if IsNameToHandleAtFatal(&os.PathError{Err: e}) {
			t.Errorf("%v must not be fatal", e)
		}
	}
}

func TestBtime(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	before := time.Now().Add(-2 * time.Second)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ts, ok, err := Btime(handleOpenPath(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		testutil.Gate(t, "a file system with birth times (statx STATX_BTIME) under the test directory")
	}
	bt := time.Unix(ts.Sec, int64(ts.Nsec))
	if bt.Before(before) || bt.After(time.Now().Add(2*time.Second)) {
		t.Errorf("btime %v not near now", bt)
	}
}
