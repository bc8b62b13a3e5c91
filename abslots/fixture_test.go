package abslots

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// tree is a fixture spec: "path" -> content, or "path" -> "@target" for a
// symlink, or "path/" -> "" for an empty directory.
type tree map[string]string

func writeTree(t testing.TB, dir string, tr tree) {
	t.Helper()
	for p, c := range tr {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(c, "@") {
			if err := os.Symlink(c[1:], full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// watched are the directories whose content a scenario checks.
var watched = []string{"/oem", "/etc/extensions", "/etc/flatcar/oem-sysext", "/etc/flatcar/sysext", "/etc/systemd"}

// snapshot returns the watched part of dir as a tree (files with content,
// links as "@target", directories omitted).
func snapshot(t testing.TB, dir string) tree {
	t.Helper()
	out := tree{}
	for _, w := range watched {
		base := filepath.Join(dir, w)
		filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				tg, _ := os.Readlink(p)
				out[rel] = "@" + tg
			case d.Type().IsRegular():
				b, _ := os.ReadFile(p)
				out[rel] = string(b)
			}
			return nil
		})
	}
	return out
}

// diffTrees describes differences between want and got, "" if equal.
func diffTrees(want, got tree) string {
	var d []string
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	ks := make([]string, 0, len(keys))
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		w, wok := want[k]
		g, gok := got[k]
		switch {
		case !wok:
			d = append(d, "unexpected "+k+" = "+g)
		case !gok:
			d = append(d, "missing "+k+" = "+w)
		case w != g:
			d = append(d, k+": want "+w+", got "+g)
		}
	}
	return strings.Join(d, "\n")
}

// merge returns a copy of a with b's entries added (b wins); an entry of
// b with value "-" deletes the key.
func merge(a, b tree) tree {
	out := tree{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if v == "-" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}
