package abslots

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"path"
	"sort"
	"strings"
	"syscall"

	"github.com/ext-setup-root/ext-setup-root/release"
)

// Facts is everything the plan depends on, read from the target root (and
// the kernel command line and disk for the slot). Gathering facts changes
// nothing; missing files are facts, not errors.
type Facts struct {
	// Version is the os-release value of the configured version key ("" if
	// unknown); VersionSource names the file.
	Version       string `json:"version"`
	VersionSource string `json:"version_source"`
	// OEMID is ID= from the OEM release file ("" if absent).
	OEMID       string `json:"oemid,omitempty"`
	ActiveFlag  bool   `json:"active_flag"`
	MigrateFlag bool   `json:"migrate_flag"`
	// MigrationList holds the legacy paths to delete; nil if the list file
	// is missing.
	MigrationList []string `json:"migration_list,omitempty"`
	// Enabled is the merged enabled list.
	Enabled EnabledList `json:"enabled"`
	// OEMUnreadable and ExtensionsUnreadable are set when an input of that
	// part (an enabled or opt-out list, a store, the link directory) exists
	// but cannot be read. Reading it as absent would be wrong (an opt-out
	// lost, images taken as missing and their links removed, a user's
	// /dev/null link overwritten), so that part's links are left as they
	// are; Problems names the file.
	OEMUnreadable        bool `json:"oem_unreadable,omitempty"`
	ExtensionsUnreadable bool `json:"extensions_unreadable,omitempty"`
	// Files maps in-root paths of store entries and other probed paths to
	// what is there.
	Files map[string]FileFact `json:"files"`
	// Links maps in-root paths in the link directory to their state.
	Links map[string]LinkFact `json:"links"`
	// Slot is the booted /usr slot, nil if unknown.
	Slot *Slot `json:"slot,omitempty"`
	// Problems are bad inputs found while gathering (each names its file).
	Problems []string `json:"problems,omitempty"`
	// TempDirs are listed directories holding temporary files of a crashed
	// run; Apply cleans them first.
	TempDirs []string `json:"temp_dirs,omitempty"`
}

// FileFact describes an existing path.
type FileFact struct {
	// Regular is true for a regular file (or a link to one).
	Regular bool  `json:"regular"`
	Symlink bool  `json:"symlink,omitempty"`
	Size    int64 `json:"size"`
}

// LinkFact describes an entry of the link directory.
type LinkFact struct {
	// Symlink is false for a regular file or directory a user put there.
	Symlink bool `json:"symlink"`
	// Target is the raw link text.
	Target string `json:"target,omitempty"`
	// Resolved is the in-root path the link leads to, "" if it does not
	// resolve to an existing file.
	Resolved string `json:"resolved,omitempty"`
}

// exists reports whether p is an existing regular file (following links,
// like test -e on an image).
func (f *Facts) exists(p string) bool { ff, ok := f.Files[p]; return ok && ff.Regular }

// Gather reads the facts for cfg from root. slot and its error come from
// the caller (ReadSlot), since they depend on the host, not the root.
func Gather(root FS, cfg *Config) *Facts {
	f := &Facts{Files: map[string]FileFact{}, Links: map[string]LinkFact{}}
	f.VersionSource = cfg.OSRelease
	if b, err := root.ReadFile(cfg.OSRelease); err == nil {
		m, perr := release.Parse(bytes.NewReader(b), cfg.OSRelease)
		if perr != nil {
			f.problem(perr.Error())
		} else if v := m[cfg.VersionKey]; v != "" {
			if err := checkName(cfg.VersionKey, v, cfg.OSRelease); err != nil {
				f.problem(err.Error())
			} else {
				f.Version = v
			}
		}
	} else {
		f.problem(cfg.OSRelease + ": " + errText(err))
	}

	if cfg.OEM.Enabled {
		f.gatherOEM(root, cfg)
	}
	if cfg.Extensions.Enabled {
		f.gatherEnabled(root, cfg)
		if !f.listDir(root, cfg.Extensions.Store) {
			f.ExtensionsUnreadable = true
		}
	}
	f.gatherLinks(root, cfg.LinkDir)
	return f
}

func (f *Facts) gatherOEM(root FS, cfg *Config) {
	b, err := root.ReadFile(cfg.OEM.ReleaseFile)
	if err != nil {
		if !absent(err) {
			f.problem(cfg.OEM.ReleaseFile + ": " + err.Error() + "; OEM link left as it is")
		}
		return
	}
	// Only the ID line matters; other lines of oem-release may be in any
	// format, so a line-oriented scan rather than a strict parse.
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && k == cfg.OEM.IDKey {
			v = unquote(v)
			if err := checkName("OEM ID", v, cfg.OEM.ReleaseFile); err != nil {
				f.problem(err.Error())
				return
			}
			f.OEMID = v
			break
		}
	}
	if f.OEMID == "" {
		return
	}
	vars := map[string]string{"OEMID": f.OEMID}
	f.ActiveFlag = f.probe(root, path.Join(cfg.OEM.FlagDir, expand(cfg.OEM.ActiveFlag, vars)))
	f.MigrateFlag = f.probe(root, path.Join(cfg.OEM.FlagDir, expand(cfg.OEM.MigrateFlag, vars)))
	for _, s := range cfg.OEM.Stores {
		if !f.listDir(root, s) {
			f.OEMUnreadable = true
		}
	}
	if f.MigrateFlag {
		list := path.Join(cfg.OEM.MigrationListDir, f.OEMID)
		if b, err := root.ReadFile(list); err == nil {
			f.MigrationList = []string{}
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				f.MigrationList = append(f.MigrationList, sc.Text())
			}
		}
		for k := range cfg.OEM.MigrationRelink {
			f.probe(root, k)
		}
	}
}

func (f *Facts) gatherEnabled(root FS, cfg *Config) {
	var files []enabledFile
	seen := map[string]bool{}
	for _, name := range append(append([]string{}, cfg.Extensions.EnabledLists...), cfg.Extensions.OptoutLists...) {
		if seen[name] {
			continue
		}
		seen[name] = true
		b, err := root.ReadFile(name)
		if err != nil {
			if !absent(err) {
				f.problem(name + ": " + err.Error() + "; extension links left as they are")
				f.ExtensionsUnreadable = true
			}
			continue
		}
		names, outs, _ := parseEnabled(bytes.NewReader(b))
		ef := enabledFile{Source: name}
		for _, n := range names {
			if err := checkName("extension name", n, name); err != nil {
				f.problem(err.Error())
				continue
			}
			ef.Names = append(ef.Names, n)
		}
		for _, n := range outs {
			if err := checkName("extension name", n, name); err != nil {
				f.problem(err.Error())
				continue
			}
			ef.Optouts = append(ef.Optouts, n)
		}
		files = append(files, ef)
	}
	f.Enabled = mergeEnabled(files, cfg.Extensions.EnabledLists, cfg.Extensions.OptoutLists)
}

// probe records whether p exists (following links) and reports it.
func (f *Facts) probe(root FS, p string) bool {
	lfi, err := root.Lstat(p)
	if err != nil {
		return false
	}
	ff := FileFact{Symlink: lfi.Mode()&fs.ModeSymlink != 0, Regular: lfi.Mode().IsRegular(), Size: lfi.Size()}
	if ff.Symlink {
		if fi, err := root.Stat(p); err == nil {
			ff.Regular, ff.Size = fi.Mode().IsRegular(), fi.Size()
		}
	}
	f.Files[p] = ff
	return true
}

// listDir records every entry of a store directory. Entry types come from
// the directory listing (lstat relative to the open directory, one
// syscall); only symlinks are followed (inside the root) to see what they
// point at. It returns false when dir exists but cannot be listed (a
// problem naming it is recorded).
func (f *Facts) listDir(root FS, dir string) bool {
	ents, err := root.ReadDir(dir)
	if err != nil {
		return f.readable(dir, err)
	}
	f.noteTemps(dir, ents)
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		if e.Type()&fs.ModeSymlink != 0 {
			f.probe(root, p)
			continue
		}
		ff := FileFact{Regular: e.Type().IsRegular()}
		if ff.Regular {
			if fi, err := e.Info(); err == nil {
				ff.Size = fi.Size()
			}
		}
		f.Files[p] = ff
	}
	return true
}

// noteTemps remembers dir if it holds a temporary file of rootfs.
func (f *Facts) noteTemps(dir string, ents []fs.DirEntry) {
	for _, e := range ents {
		if isTempName(e.Name()) {
			f.TempDirs = append(f.TempDirs, dir)
			return
		}
	}
}

func (f *Facts) gatherLinks(root FS, dir string) {
	ents, err := root.ReadDir(dir)
	if err != nil {
		if !f.readable(dir, err) {
			f.OEMUnreadable, f.ExtensionsUnreadable = true, true
		}
		return
	}
	f.noteTemps(dir, ents)
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		lf := LinkFact{}
		if e.Type()&fs.ModeSymlink != 0 {
			lf.Symlink = true
			lf.Target, _ = root.Readlink(p)
			if fi, err := root.Stat(p); err == nil && fi.Mode().IsRegular() {
				if r, err := root.Resolve(p); err == nil {
					lf.Resolved = r
				}
			}
		}
		f.Links[p] = lf
	}
}

// readable turns the error of listing dir into false (and a problem naming
// dir) unless dir simply does not exist.
func (f *Facts) readable(dir string, err error) bool {
	if absent(err) {
		return true
	}
	f.problem(dir + ": " + err.Error() + "; links that depend on it left as they are")
	return false
}

func (f *Facts) problem(s string) { f.Problems = append(f.Problems, s) }

// sortedKeys returns the keys of m in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// absent reports a file that is simply not there (also when a parent is
// not a directory), as opposed to one that exists but cannot be read.
func absent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func errText(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "missing"
	}
	return err.Error()
}
