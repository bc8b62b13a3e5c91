package boot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// One boot configuration per boot (issue 14 item 6).
//
// boot.toml holds the image policy and the essential lists every stage
// applies. Read afresh by each stage, it came from different places: the
// pre stage read /etc before the merge, the post stage and the booted
// late stages read it through the merged /etc (and /usr), so a confext
// or sysext that ships etc/ext-setup-root/boot.toml could change the
// policy that judges the images after the first merge. Now the pre stage,
// which runs before any merge, reads it and records what it read (the
// file's name and bytes) in the state dir, under the root's device and
// inode like the hierarchy locks: /run moves to /sysroot/run at
// switch-root and the initrd's /sysroot is the booted "/", so the post
// and late stages of the same boot find the same record. Without a record
// (pre disabled or not run) a stage reads the file itself, /etc as it is
// beneath a merge (the root's own file system, through a non-recursive
// clone of the root mount), and records it for the stages after it.

// maxRecord bounds the record read back (boot.toml and its name).
const maxRecord = 1 << 20

// configRecord is the state file: the boot.toml read (File "" when there
// was none) and its bytes, parsed again by every stage that uses it.
type configRecord struct {
	File string `json:"file"`
	TOML string `json:"toml"`
}

// LoadStageConfig returns the boot configuration stage st applies in
// root: the pre stage reads boot.toml (LoadConfigBeneath) and records it
// unless record is false (a dry run); the other stages use the record of
// this boot, and read and record it themselves only when there is none.
func LoadStageConfig(root string, st Stage, record bool, log *oplog.Logger) (Config, error) {
	if log == nil {
		log = oplog.Discard()
	}
	rp, rerr := recordPath(root)
	if rerr != nil {
		log.Warnf("boot configuration record: %v", rerr)
	}
	if st != StagePre && rp != "" {
		cfg, ok, err := readRecord(rp)
		switch {
		case err != nil:
			log.Warnf("boot configuration record %s unusable, reading the configuration again: %v", rp, err)
		case ok:
			log.Infof("using the boot configuration recorded by an earlier stage of this boot (%s)", describe(cfg))
			return cfg, nil
		}
	}
	cfg, raw, err := LoadConfigBeneath(root)
	if err != nil || !record || rp == "" {
		return cfg, err
	}
	op := log.Op("record the boot configuration (%s) for the later stages in %s", describe(cfg), rp)
	b, _ := json.Marshal(configRecord{File: cfg.File, TOML: string(raw)})
	op.Finish(rootfs.WriteHostFileAtomic(rp, b, 0o700, 0o600))
	return cfg, nil
}

func describe(c Config) string {
	if c.File == "" {
		return "no boot.toml, the defaults"
	}
	return c.File
}

// recordPath names the record of root:
// <StateDir>/boot-config/MAJ.MIN-INO-boot.json, named like the lock files.
func recordPath(root string) (string, error) {
	var st unix.Stat_t
	if err := sysx.Retry(func() error { return unix.Stat(root, &st) }); err != nil {
		return "", &os.PathError{Op: "stat", Path: root, Err: err}
	}
	name := fmt.Sprintf("%d.%d-%d-boot.json", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	return filepath.Join(paths.StateDir, "boot-config", name), nil
}

// readRecord reads and parses the record at p; ok is false when there is
// none.
func readRecord(p string) (Config, bool, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, false, nil
	}
	if err != nil {
		return Config{}, false, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return Config{}, false, fmt.Errorf("%s: not a regular file", p)
	}
	cfg, err := parseRecord(f, p)
	return cfg, err == nil, err
}

// parseRecord decodes a record (at most maxRecord bytes) and the boot.toml
// in it; name is the record's path, for errors.
func parseRecord(r io.Reader, name string) (Config, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxRecord+1))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxRecord {
		return Config{}, fmt.Errorf("%s: larger than %d bytes", name, maxRecord)
	}
	var rec configRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	if rec.File == "" {
		return DefaultConfig(), nil
	}
	return ParseConfig(strings.NewReader(rec.TOML), rec.File)
}

// LoadConfigBeneath is LoadConfig with /etc read as it is beneath a merge:
// when root/etc is an overlay mount, its ConfigDirs entry is read in a
// non-recursive clone of the root's mount, which shows the root's own
// /etc. It also returns the bytes read (nil without a file).
func LoadConfigBeneath(root string) (Config, []byte, error) {
	r, err := rootfs.Open(root)
	if err != nil {
		return DefaultConfig(), nil, err
	}
	defer r.Close()
	lower, err := etcBeneath(r)
	if err != nil {
		return DefaultConfig(), nil, err
	}
	if lower != nil {
		defer lower.Close()
	}
	for _, d := range ConfigDirs {
		from := r
		if lower != nil && (d == "/etc" || strings.HasPrefix(d, "/etc/")) {
			from = lower
		}
		name := path.Join(d, "boot.toml")
		b, err := from.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Config{}, nil, err
		}
		cfg, err := ParseConfig(bytes.NewReader(b), name)
		return cfg, b, err
	}
	return DefaultConfig(), nil, nil
}

// etcBeneath returns the root's own file system (a detached non-recursive
// clone of its mount) when root/etc is an overlay mount, else nil.
func etcBeneath(r *rootfs.Root) (*rootfs.Root, error) {
	etc, err := r.OpenPath("etc")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer etc.Close()
	var sfs unix.Statfs_t
	if err := sysx.Retry(func() error { return unix.Fstatfs(int(etc.Fd()), &sfs) }); err != nil {
		return nil, &os.PathError{Op: "statfs", Path: etc.Name(), Err: err}
	}
	if sfs.Type != unix.OVERLAYFS_SUPER_MAGIC {
		return nil, nil
	}
	fd, err := unix.FcntlInt(uintptr(r.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "dup", Path: r.Path(), Err: err}
	}
	rf := os.NewFile(uintptr(fd), r.Path())
	defer rf.Close()
	clone, err := mount.BindDetached(rf, false)
	if err != nil {
		return nil, fmt.Errorf("%s/etc is merged and the root's mount cannot be cloned to read the configuration beneath it: %w", r.Path(), err)
	}
	defer clone.Close()
	// The clone lives as long as a descriptor refers to it: the Root
	// opened through it keeps it.
	return rootfs.Open(fmt.Sprintf("/proc/self/fd/%d", clone.Fd()))
}
