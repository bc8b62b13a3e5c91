package systemd262

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// MetaDir is the metadata directory of a confext merge inside /etc.
const MetaDir = ".systemd-confext"

// FileInfo is what the differential tests compare of one file.
type FileInfo struct {
	Type    string // "f", "d", "l"
	Mode    os.FileMode
	UID     uint32
	GID     uint32
	Content string // file content or symlink target
}

// String is a one-line rendering for diffs between two snapshots.
func (f FileInfo) String() string {
	c := f.Content
	if len(c) > 60 {
		c = c[:60] + "..."
	}
	return fmt.Sprintf("%s %04o %d:%d %q", f.Type, f.Mode.Perm(), f.UID, f.GID, c)
}

// Snapshot is the observable state of a merged root's /etc.
type Snapshot struct {
	// Tree maps paths relative to etc (without the metadata dir) to files.
	Tree map[string]FileInfo
	// Meta maps metadata file names ("" for the dir itself) to files.
	Meta map[string]FileInfo
	// Origin is the parsed origin file (nil if absent).
	Origin any
	// EtcDev is MAJ:MIN of stat(etc).st_dev.
	EtcDev string
	// Mounts are the mounts at etc and below, mount points relative to root.
	Mounts []MountEntry
	// WorkDirExists says whether the dir named by work_dir exists.
	WorkDirExists bool
}

func fileInfo(path string, d fs.DirEntry) (FileInfo, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return FileInfo{}, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	fi := FileInfo{Mode: os.FileMode(st.Mode & 0o7777), UID: st.Uid, GID: st.Gid}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		fi.Type = "d"
	case syscall.S_IFLNK:
		fi.Type = "l"
		t, err := os.Readlink(path)
		if err != nil {
			return fi, err
		}
		fi.Content = t
	case syscall.S_IFREG:
		fi.Type = "f"
		b, err := os.ReadFile(path)
		if err != nil {
			return fi, err
		}
		fi.Content = string(b)
	default:
		fi.Type = fmt.Sprintf("other(%o)", st.Mode&syscall.S_IFMT)
	}
	return fi, nil
}

// TakeSnapshot records the merged /etc of root (a host path).
func TakeSnapshot(root string) (*Snapshot, error) { return TakeSnapshotAt(root, "etc", MetaDir) }

// TakeSnapshotAt records the merged hierarchy hier ("etc", "usr", "opt") of
// root (a host path), whose metadata directory is metaDir
// (".systemd-confext" or ".systemd-sysext"). The Etc* fields then describe
// that hierarchy.
func TakeSnapshotAt(root, hier, metaDir string) (*Snapshot, error) {
	etc := filepath.Join(root, hier)
	s := &Snapshot{Tree: map[string]FileInfo{}, Meta: map[string]FileInfo{}}
	err := filepath.WalkDir(etc, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(etc, p)
		if rel == metaDir {
			return fs.SkipDir
		}
		fi, err := fileInfo(p, d)
		if err != nil {
			return err
		}
		s.Tree[rel] = fi
		return nil
	})
	if err != nil {
		return nil, err
	}
	meta := filepath.Join(etc, metaDir)
	if ents, err := os.ReadDir(meta); err == nil {
		fi, err := fileInfo(meta, nil)
		if err != nil {
			return nil, err
		}
		s.Meta[""] = fi
		for _, e := range ents {
			fi, err := fileInfo(filepath.Join(meta, e.Name()), e)
			if err != nil {
				return nil, err
			}
			s.Meta[e.Name()] = fi
		}
	}
	if o, ok := s.Meta["origin"]; ok {
		if err := json.Unmarshal([]byte(o.Content), &s.Origin); err != nil {
			return nil, fmt.Errorf("parse %s/origin: %w", meta, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(etc, &st); err != nil {
		return nil, err
	}
	s.EtcDev = fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	for _, m := range MountsAt(etc) {
		m.MountPoint = strings.TrimPrefix(m.MountPoint, root)
		s.Mounts = append(s.Mounts, m)
	}
	if w, ok := s.Meta["work_dir"]; ok {
		_, err := os.Lstat(filepath.Join(root, strings.TrimSuffix(w.Content, "\n")))
		s.WorkDirExists = err == nil
	}
	return s, nil
}

// DevMatches reports whether the dev file matches stat(etc).st_dev, the
// condition under which systemd treats the merge as its own.
func (s *Snapshot) DevMatches() bool {
	d, ok := s.Meta["dev"]
	return ok && d.Content == s.EtcDev+"\n"
}

// OriginJSON returns the origin file's document re-encoded compactly with
// sorted keys (for messages).
func (s *Snapshot) OriginJSON() string {
	b, _ := json.Marshal(s.Origin)
	return string(b)
}

// mountShape is the comparable part of a mount: where, how (per-mount
// flags), what (fstype, source), whether it has an upper dir and whether
// the superblock is read-only. Layer paths are not compared: systemd's live
// in its private staging tmpfs.
func mountShape(m MountEntry) string {
	super := "ro"
	if strings.HasPrefix(m.SuperOptions, "rw") {
		super = "rw"
	}
	upper := strings.Contains(m.SuperOptions, "upperdir=")
	return fmt.Sprintf("%s root=%s opts=%s %s src=%s super=%s upper=%v", m.MountPoint, m.Root, m.Options, m.FSType, m.Source, super, upper)
}

// workSuffix is the per-run part of ext-setup-root's work dir names
// (".systemd-etc-workdir-<16 hex>"; systemd uses the plain name).
var workSuffix = regexp.MustCompile(`(\.systemd-[^/]*-workdir)-[0-9a-f]{16}`)

// plainWorkDir returns a copy of s whose work_dir names systemd's plain
// work dir name: where the work dir lives is compared, not its per-run
// suffix.
func (s *Snapshot) plainWorkDir() *Snapshot {
	w, ok := s.Meta["work_dir"]
	if !ok {
		return s
	}
	c := *s
	c.Meta = make(map[string]FileInfo, len(s.Meta))
	for k, v := range s.Meta {
		c.Meta[k] = v
	}
	w.Content = workSuffix.ReplaceAllString(w.Content, "$1")
	c.Meta["work_dir"] = w
	return &c
}

// Diff lists the differences between two snapshots of the same inputs,
// a ("systemd") and b ("ours"). dev is compared by format and by its match
// with st_dev, not by value (each overlay gets a fresh anonymous device).
func Diff(a, b *Snapshot, aName, bName string) []string {
	var d []string
	cmpMaps := func(what string, x, y map[string]FileInfo, skip func(string) bool) {
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range y {
			keys[k] = true
		}
		var ks []string
		for k := range keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			if skip != nil && skip(k) {
				continue
			}
			xv, xok := x[k]
			yv, yok := y[k]
			switch {
			case !xok:
				d = append(d, fmt.Sprintf("%s %q: only in %s (%s)", what, k, bName, yv))
			case !yok:
				d = append(d, fmt.Sprintf("%s %q: only in %s (%s)", what, k, aName, xv))
			case xv != yv:
				d = append(d, fmt.Sprintf("%s %q: %s %s, %s %s", what, k, aName, xv, bName, yv))
			}
		}
	}
	cmpMaps("tree", a.Tree, b.Tree, nil)
	a, b = a.plainWorkDir(), b.plainWorkDir()
	// origin is compared as JSON below, dev by semantics.
	cmpMaps("meta", a.Meta, b.Meta, func(k string) bool { return k == "origin" || k == "dev" })
	for _, s := range []struct {
		n string
		x *Snapshot
	}{{aName, a}, {bName, b}} {
		if !s.x.DevMatches() {
			d = append(d, fmt.Sprintf("%s: dev file %q does not match st_dev %s of etc", s.n, s.x.Meta["dev"].Content, s.x.EtcDev))
		}
	}
	if ao, bo := a.Meta["origin"], b.Meta["origin"]; ao.Mode != bo.Mode || ao.UID != bo.UID || ao.GID != bo.GID {
		d = append(d, fmt.Sprintf("meta \"origin\" attributes: %s %04o %d:%d, %s %04o %d:%d", aName, ao.Mode, ao.UID, ao.GID, bName, bo.Mode, bo.UID, bo.GID))
	}
	if !reflect.DeepEqual(a.Origin, b.Origin) {
		d = append(d, fmt.Sprintf("origin JSON differs:\n  %s: %s\n  %s: %s", aName, a.OriginJSON(), bName, b.OriginJSON()))
	}
	if ob := b.Meta["origin"].Content; ob != "" && !bytes.HasSuffix([]byte(ob), []byte("}\n")) {
		d = append(d, fmt.Sprintf("%s: origin does not end in \"}\\n\"", bName))
	}
	var as, bs []string
	for _, m := range a.Mounts {
		as = append(as, mountShape(m))
	}
	for _, m := range b.Mounts {
		bs = append(bs, mountShape(m))
	}
	if !reflect.DeepEqual(as, bs) {
		d = append(d, fmt.Sprintf("mounts differ:\n  %s:\n    %s\n  %s:\n    %s", aName, strings.Join(as, "\n    "), bName, strings.Join(bs, "\n    ")))
	}
	if a.WorkDirExists != b.WorkDirExists {
		d = append(d, fmt.Sprintf("work dir exists: %s %v, %s %v", aName, a.WorkDirExists, bName, b.WorkDirExists))
	}
	return d
}
