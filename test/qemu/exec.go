package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// run runs a host tool and fails t with its output when it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writeFile writes data to root/rel (creating parents) with mode perm. The
// trees it writes into are staging directories this package created, never
// a live root, so plain paths are fine here.
func writeFile(t testing.TB, root, rel, data string, perm os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
}

// symlink creates root/rel -> target, replacing what is there.
func symlink(t testing.TB, root, rel, target string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// mkdirs creates root and directories under it.
func mkdirs(t testing.TB, root string, rels ...string) {
	t.Helper()
	for _, r := range append([]string{"."}, rels...) {
		if err := os.MkdirAll(filepath.Join(root, r), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// pruneMinAge is the age below which prune keeps a file whatever its rank.
const pruneMinAge = 12 * time.Hour

// prune keeps the keep newest files matching pattern (a filepath.Glob
// pattern) and removes the older others: content-hashed cache entries pile
// up as the binary changes, at 150 MB per /usr image.
func prune(pattern string, keep int) {
	files, _ := filepath.Glob(pattern)
	if len(files) <= keep {
		return
	}
	type ent struct {
		p string
		t int64
	}
	var es []ent
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			es = append(es, ent{f, st.ModTime().UnixNano()})
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].t > es[j].t })
	// A file written in the last pruneMinAge may still be in use by a
	// long run started earlier (a soak holds its initrd for hours while
	// other runs build theirs): only older ones go.
	cutoff := time.Now().Add(-pruneMinAge).UnixNano()
	for _, e := range es[min(keep, len(es)):] {
		if e.t < cutoff {
			os.Remove(e.p)
		}
	}
}
