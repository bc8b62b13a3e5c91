package fetch

import (
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
)

func TestURL(t *testing.T) {
	c := DefaultConfig()
	tg := Target{Board: "amd64-usr", Arch: "amd64", Version: "4459.2.1"}
	for _, tc := range []struct {
		name, cmdline, want, err string
		src                      Source
	}{
		{"release default", "", "https://update.release.flatcar-linux.net/amd64-usr/4459.2.1/oem-azure.gz", "", c.Source},
		{"dev default", "", "https://bincache.flatcar-linux.net/images/amd64/4459.2.1/flatcar_test_update-oem-azure.gz", "", c.Dev.Source},
		{"kernel command line, trailing slash", "flatcar.release_file_server_url=https://mirror.example/fc/", "https://mirror.example/fc/amd64-usr/4459.2.1/oem-azure.gz", "", c.Source},
		{"kernel command line http refused", "flatcar.release_file_server_url=http://mirror.example", "", "scheme must be https", c.Source},
		{"kernel command line with user refused", "flatcar.release_file_server_url=https://u:p@mirror.example", "", "no user information", c.Source},
		{"dev kernel command line", "flatcar.dev_file_server_url=https://dev.example", "https://dev.example/images/amd64/4459.2.1/flatcar_test_update-oem-azure.gz", "", c.Dev.Source},
		{"no server", "", "", "no server configured", Source{Path: "{NAME}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.URL(tc.src, kcmdline.ParseString(tc.cmdline), tg, "oem-azure")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// Values read from disk cannot reshape the URL.
	for _, bad := range []string{"../x", "a/b", "a?b", "", ".."} {
		if _, err := c.URL(c.Source, nil, Target{Board: bad, Version: "1"}, "oem-x"); err == nil {
			t.Errorf("board %q accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if _, err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Deadline, c.Attempts, c.Key, c.Essential = "soon", 0, "rel", []string{"["}
	_, err := c.Validate()
	for _, want := range []string{"fetch.deadline", "fetch.attempts", "fetch.key", "fetch.essential"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	d := DefaultConfig()
	if !d.IsEssential("oem-azure") || d.IsEssential("flatcar-zfs") {
		t.Error("default failure policy: oem-* essential, others optional")
	}
}

func TestTargetFor(t *testing.T) {
	c := DefaultConfig()
	host := mustHost(t, "ID=flatcar\nVERSION=4459.2.1\nVERSION_ID=4459.2.1\nFLATCAR_BOARD=arm64-usr\n")
	tg := c.targetFor(host, "4459.2.1")
	if tg.Arch != "arm64" || tg.Board != "arm64-usr" || tg.VersionID != "4459.2.1" {
		t.Fatalf("%+v", tg)
	}
	if tg := c.targetFor(host, "4500.0.0"); tg.VersionID != "4500.0.0" {
		t.Fatalf("pre-update target %+v", tg)
	}
}
