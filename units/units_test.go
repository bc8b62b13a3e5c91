// Package units holds no Go code: its tests check the systemd units and
// drop-ins in this directory, the dracut module in ../dracut and what
// `make install` puts where.
package units

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

// orderingKeys are the dependency and ordering settings that must each be
// explained by a comment on the line right above them.
var orderingKeys = []string{"After", "Before", "Wants", "Requires", "Requisite", "BindsTo",
	"PartOf", "Upholds", "Conflicts", "RequiresMountsFor", "WantedBy", "RequiredBy"}

var unitFiles = []string{
	"initrd/ext-setup-root-pre.service",
	"initrd/ext-setup-root-post.service",
	"host/systemd-confext.service.d/10-ext-setup-root.conf",
	"host/systemd-sysext.service.d/10-ext-setup-root.conf",
	"host/systemd-sysext@.service.d/10-ext-setup-root.conf",
	"host/systemd-sysupdate-notify-sysext@.service.d/10-ext-setup-root.conf",
}

// values returns section.key -> values, in file order.
func values(t *testing.T, file string) map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	m := map[string][]string{}
	for _, o := range opts {
		k := o.Section + "." + o.Name
		m[k] = append(m[k], o.Value)
	}
	return m
}

// words splits space-separated list settings of all occurrences.
func words(vs []string) []string {
	var out []string
	for _, v := range vs {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func TestOrderingLinesHaveComments(t *testing.T) {
	for _, file := range unitFiles {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		prev, n, found := "", 0, 0
		for sc.Scan() {
			n++
			line := strings.TrimSpace(sc.Text())
			key, _, ok := strings.Cut(line, "=")
			if ok && slices.Contains(orderingKeys, key) {
				found++
				if !strings.HasPrefix(prev, "#") {
					t.Errorf("%s:%d: %q has no comment on the line above", file, n, line)
				}
			}
			prev = line
		}
		f.Close()
		if strings.HasSuffix(file, ".service") && found == 0 {
			t.Errorf("%s: no ordering lines found (parser broken?)", file)
		}
	}
}

func TestInitrdUnits(t *testing.T) {
	for _, stage := range []string{"pre", "post"} {
		file := "initrd/ext-setup-root-" + stage + ".service"
		v := values(t, file)
		want := map[string]string{
			"Unit.ConditionPathExists": "/etc/initrd-release",
			"Unit.DefaultDependencies": "no",
			"Unit.OnFailure":           "emergency.target",
			"Unit.OnFailureJobMode":    "isolate",
			"Unit.RequiresMountsFor":   "/sysroot/usr",
			"Service.Type":             "oneshot",
			"Service.RemainAfterExit":  "yes",
			"Service.ExecStart":        "/usr/bin/ext-setup-root boot --stage=" + stage + " --root=/sysroot",
		}
		for k, w := range want {
			if got := v[k]; len(got) != 1 || got[0] != w {
				t.Errorf("%s: %s = %q, want %q", file, k, got, w)
			}
		}
		after, before := words(v["Unit.After"]), words(v["Unit.Before"])
		for _, u := range []string{"initrd-root-fs.target"} {
			if !slices.Contains(after, u) {
				t.Errorf("%s: not After=%s", file, u)
			}
		}
		for _, u := range []string{"initrd-parse-etc.service", "initrd.target"} {
			if !slices.Contains(before, u) {
				t.Errorf("%s: not Before=%s", file, u)
			}
		}
		if stage == "post" {
			for _, u := range []string{"ignition-files.service", "ext-setup-root-pre.service"} {
				if !slices.Contains(after, u) {
					t.Errorf("%s: not After=%s", file, u)
				}
			}
			// After= only: Ignition may be absent from the initrd.
			if slices.Contains(words(v["Unit.Requires"]), "ignition-files.service") {
				t.Errorf("%s: Requires=ignition-files.service", file)
			}
		} else if !slices.Contains(before, "ignition-files.service") {
			t.Errorf("%s: not Before=ignition-files.service", file)
		}
	}
}

func TestHostDropins(t *testing.T) {
	for _, class := range []string{"confext", "sysext"} {
		file := filepath.Join("host", "systemd-"+class+".service.d", "10-ext-setup-root.conf")
		v := values(t, file)
		late := "/usr/bin/ext-setup-root boot --stage=late-" + class + " --root=/"
		for _, k := range []string{"Service.ExecStart", "Service.ExecReload"} {
			// The empty assignment first resets the stock command.
			if got := v[k]; len(got) != 2 || got[0] != "" || got[1] != late {
				t.Errorf("%s: %s = %q, want reset then %q", file, k, got, late)
			}
		}
		if got := v["Service.ExecStop"]; len(got) != 1 || got[0] != "" {
			t.Errorf("%s: ExecStop = %q, want only a reset", file, got)
		}
	}
}

// TestVarlinkDropins: the per-connection services of systemd 262's
// systemd-sysext.socket and systemd-sysupdate-notify-sysext.socket run
// ext-setup-root's Varlink server instead of systemd-sysext (with the
// stock "-" prefix: a failed connection does not fail the unit).
func TestVarlinkDropins(t *testing.T) {
	for _, unit := range []string{"systemd-sysext@.service", "systemd-sysupdate-notify-sysext@.service"} {
		file := filepath.Join("host", unit+".d", "10-ext-setup-root.conf")
		v := values(t, file)
		if got := v["Service.ExecStart"]; len(got) != 2 || got[0] != "" || got[1] != "-/usr/bin/ext-setup-root varlink" {
			t.Errorf("%s: ExecStart = %q, want reset then %q", file, got, "-/usr/bin/ext-setup-root varlink")
		}
		if len(v) != 1 {
			t.Errorf("%s: sets more than ExecStart: %v", file, v)
		}
	}
}
