package prepare

// A scenario is a root: the vendor's /usr content (usr: share/flatcar/etc
// and the whiteout list) and the rest of the root (root).
type scenario struct {
	name string
	usr  []ent
	root []ent
}

const blank = BlankMachineID + "\n"

// dedupScenario covers every rule of the dedup: identical and differing
// files, modes, owners, ACLs, link targets, directories, opaque
// directories, hard links, odd names, types never removed.
func dedupScenario() scenario {
	d := "share/flatcar/etc/"
	usr := []ent{
		{path: "share/flatcar/etc-no-whiteouts", kind: 'f', data: ""},
		{path: d + "same", kind: 'f', data: "vendor\n"},
		{path: d + "content", kind: 'f', data: "vendor\n"},
		{path: d + "mode", kind: 'f', data: "vendor\n"},
		{path: d + "owner", kind: 'f', data: "vendor\n"},
		{path: d + "suid", kind: 'f', data: "x", mode: 0o4755},
		{path: d + "empty", kind: 'f', data: ""},
		{path: d + "name with space", kind: 'f', data: "s"},
		{path: d + "name\nwith newline", kind: 'f', data: "n"},
		{path: d + "link", kind: 'l', data: "same"},
		{path: d + "link-other", kind: 'l', data: "same"},
		{path: d + "link-abs", kind: 'l', data: "/usr/share/zoneinfo/UTC"},
		{path: d + "emptydir", kind: 'd'},
		{path: d + "dir", kind: 'd'},
		{path: d + "dir/a", kind: 'f', data: "a"},
		{path: d + "dir/sub", kind: 'd'},
		{path: d + "dir/sub/b", kind: 'f', data: "b"},
		{path: d + "mixed", kind: 'd'},
		{path: d + "mixed/a", kind: 'f', data: "a"},
		{path: d + "mixed/b", kind: 'f', data: "b"},
		{path: d + "dirmode", kind: 'd', mode: 0o700},
		{path: d + "opaque", kind: 'd'},
		{path: d + "opaque/a", kind: 'f', data: "a"},
		{path: d + "deep", kind: 'd'},
		{path: d + "deep/opaque", kind: 'd'},
		{path: d + "deep/opaque/x", kind: 'd'},
		{path: d + "deep/opaque/x/a", kind: 'f', data: "a"},
		{path: d + "acl-same", kind: 'f', data: "acl", acl: "u:1000:rw-"},
		{path: d + "acl-etc-only", kind: 'f', data: "acl"},
		{path: d + "acl-differs", kind: 'f', data: "acl", acl: "u:1000:r--"},
		{path: d + "dacl", kind: 'd', dacl: "u:1000:rwx"},
		{path: d + "dacl-differs", kind: 'd', dacl: "u:1000:rwx"},
		{path: d + "xattr", kind: 'f', data: "x", xattr: map[string]string{"user.vendor": "1"}},
		{path: d + "hard1", kind: 'f', data: "h"},
		{path: d + "hard2", kind: 'f', data: "h"},
		{path: d + "hardpart", kind: 'f', data: "h"},
		{path: d + "whiteout", kind: 'f', data: "w"},
		{path: d + "fifo", kind: 'p'},
		{path: d + "typediff", kind: 'd'},
		{path: d + "big", kind: 'f', data: string(make([]byte, 200<<10))},
		{path: d + "big-differs", kind: 'f', data: string(make([]byte, 200<<10))},
	}
	e := "etc/"
	bigDiff := make([]byte, 200<<10)
	bigDiff[150<<10] = 1
	root := append(append([]ent{}, libLinks...), []ent{
		{path: "etc", kind: 'd'},
		{path: e + "same", kind: 'f', data: "vendor\n"},
		{path: e + "content", kind: 'f', data: "user\n"},
		{path: e + "mode", kind: 'f', data: "vendor\n", mode: 0o600},
		{path: e + "owner", kind: 'f', data: "vendor\n", uid: 1000},
		{path: e + "suid", kind: 'f', data: "x", mode: 0o4755},
		{path: e + "empty", kind: 'f', data: ""},
		{path: e + "name with space", kind: 'f', data: "s"},
		{path: e + "name\nwith newline", kind: 'f', data: "n"},
		{path: e + "link", kind: 'l', data: "same"},
		{path: e + "link-other", kind: 'l', data: "content"},
		{path: e + "link-abs", kind: 'l', data: "/usr/share/zoneinfo/UTC"},
		{path: e + "emptydir", kind: 'd'},
		{path: e + "dir", kind: 'd'},
		{path: e + "dir/a", kind: 'f', data: "a"},
		{path: e + "dir/sub", kind: 'd'},
		{path: e + "dir/sub/b", kind: 'f', data: "b"},
		{path: e + "mixed", kind: 'd'},
		{path: e + "mixed/a", kind: 'f', data: "a"},
		{path: e + "mixed/b", kind: 'f', data: "user b"},
		{path: e + "mixed/new", kind: 'f', data: "new"},
		{path: e + "dirmode", kind: 'd', mode: 0o755},
		{path: e + "opaque", kind: 'd', xattr: map[string]string{"trusted.overlay.opaque": "y"}},
		{path: e + "opaque/a", kind: 'f', data: "a"},
		{path: e + "deep", kind: 'd'},
		{path: e + "deep/opaque", kind: 'd', xattr: map[string]string{"trusted.overlay.opaque": "y"}},
		{path: e + "deep/opaque/x", kind: 'd'},
		{path: e + "deep/opaque/x/a", kind: 'f', data: "a"},
		{path: e + "acl-same", kind: 'f', data: "acl", acl: "u:1000:rw-"},
		{path: e + "acl-etc-only", kind: 'f', data: "acl", acl: "u:1000:rw-"},
		{path: e + "acl-differs", kind: 'f', data: "acl", acl: "u:1000:rw-"},
		{path: e + "dacl", kind: 'd', dacl: "u:1000:rwx"},
		{path: e + "dacl-differs", kind: 'd', dacl: "u:1001:rwx"},
		{path: e + "xattr", kind: 'f', data: "x", xattr: map[string]string{"user.mine": "2"}},
		{path: e + "hard1", kind: 'f', data: "h"},
		{path: e + "hard2", kind: 'h', data: e + "hard1"},
		{path: e + "hardpart", kind: 'h', data: e + "hard1"},
		{path: e + "hardkeep", kind: 'h', data: e + "hard1"},
		{path: e + "whiteout", kind: 'c', rdev: 0},
		{path: e + "fifo", kind: 'p'},
		{path: e + "typediff", kind: 'f', data: ""},
		{path: e + "big", kind: 'f', data: string(make([]byte, 200<<10))},
		{path: e + "big-differs", kind: 'f', data: string(bigDiff)},
		{path: e + "user-only", kind: 'f', data: "mine"},
		{path: e + "user-dir", kind: 'd'},
		{path: "var", kind: 'd'},
	}...)
	return scenario{name: "dedup", usr: usr, root: root}
}

// noDupScenario is dedupScenario with the opt-out flag.
func noDupScenario() scenario {
	s := dedupScenario()
	s.name = "no-dup-update"
	s.root = append(s.root, ent{path: "etc/.no-dup-update", kind: 'f'})
	return s
}

// whiteoutScenario: listed whiteouts, other character devices, the user
// databases, a blank machine-id.
func whiteoutScenario() scenario {
	usr := []ent{
		{path: "share/flatcar/etc-no-whiteouts", kind: 'f', data: "/etc/wo\n/etc/dev13\n/etc/regular\n/etc/missing\n/etc/sub/wo\nrelative/wo\n\n# comment\n/etc/with space\n/etc/linkdir/x\n"},
		{path: "share/flatcar/etc", kind: 'd'},
	}
	root := append(append([]ent{}, libLinks...), []ent{
		{path: "etc/wo", kind: 'c'},
		{path: "etc/dev13", kind: 'c', rdev: unixMkdev(1, 3)},
		{path: "etc/regular", kind: 'f', data: "r"},
		{path: "etc/sub/wo", kind: 'c'},
		{path: "etc/unlisted", kind: 'c'},
		{path: "etc/with space", kind: 'c'},
		{path: "etc/passwd", kind: 'c'},
		{path: "etc/group", kind: 'c', rdev: unixMkdev(1, 3)},
		{path: "etc/shadow", kind: 'f', data: "root:*::0:::::\n"},
		{path: "etc/machine-id", kind: 'f', data: blank},
		{path: "relative/wo", kind: 'c'},
	}...)
	return scenario{name: "whiteouts", usr: usr, root: root}
}

// resetScenario: a keep regex, files and directories kept and removed,
// symlinks to directories and to files, odd names, the machine-id.
func resetScenario(regex string) scenario {
	usr := []ent{
		{path: "share/flatcar/etc-no-whiteouts", kind: 'f', data: ""},
		{path: "share/flatcar/etc", kind: 'd'},
	}
	root := append(append([]ent{}, libLinks...), []ent{
		{path: "selective-os-reset", kind: 'f', data: regex},
		{path: "etc/machine-id", kind: 'f', data: "0123456789abcdef0123456789abcdef\n"},
		{path: "etc/ssh/ssh_host_rsa_key", kind: 'f', data: "k", mode: 0o600},
		{path: "etc/ssh/sshd_config", kind: 'f', data: "c"},
		{path: "etc/hostname", kind: 'f', data: "h"},
		{path: "etc/systemd/system/multi-user.target.wants/x.service", kind: 'l', data: "/usr/lib/systemd/system/x.service"},
		{path: "etc/dirlink", kind: 'l', data: "../var"},
		{path: "etc/filelink", kind: 'l', data: "hostname"},
		{path: "etc/name with space", kind: 'f', data: "s"},
		{path: "etc/name\nnewline", kind: 'f', data: "n"},
		{path: "etc/wo", kind: 'c'},
		{path: "home/core/.ssh/authorized_keys", kind: 'f', data: "ssh-ed25519 AAAA"},
		{path: "home/core/notes", kind: 'f', data: "n"},
		{path: "home/other/x", kind: 'f', data: "x"},
		{path: "var/lib/docker/image", kind: 'f', data: "i"},
		{path: "var/log/journal/x", kind: 'f', data: "j"},
		{path: "var/empty", kind: 'd'},
		{path: "opt/bin/tool", kind: 'f', data: "t", mode: 0o755},
		{path: "opt/bin/hard", kind: 'h', data: "opt/bin/tool"},
		{path: "root/.bash_history", kind: 'f', data: "h"},
	}...)
	return scenario{name: "reset", usr: usr, root: root}
}

func unixMkdev(maj, min uint32) uint64 { return uint64(maj)<<8 | uint64(min) }
