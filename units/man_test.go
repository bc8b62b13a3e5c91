package units

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestManPage builds ext-setup-root.8 with `make man` (go-md2man from
// docs/ext-setup-root.8.md), renders it with `man -l` (groff when man is
// missing) with warnings on, and checks that rendering is silent and that
// the page names every command and every option the binary's --help lists.
func TestManPage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and the page")
	}
	testutil.RequireTool(t, "make", "go")
	bin := testutil.BuildBinary(t)
	dir := t.TempDir()
	out, err := exec.Command("make", "-C", "..", "-s", "man", "BIN="+filepath.Join(dir, "ext-setup-root")).CombinedOutput()
	if err != nil {
		t.Fatalf("make man: %v\n%s", err, out)
	}
	page := filepath.Join(dir, "ext-setup-root.8")
	roff, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(roff, []byte(".nh\n.TH EXT-SETUP-ROOT 8")) {
		t.Errorf("%s: no .TH header:\n%.200s", page, roff)
	}
	var cmd *exec.Cmd
	switch {
	case toolExists("man"):
		cmd = exec.Command("man", "--warnings", "-l", page)
	case toolExists("groff"):
		cmd = exec.Command("groff", "-man", "-Tutf8", "-ww", page)
	default:
		testutil.Gate(t, "neither man nor groff to render the page")
	}
	// Wide lines: no option is broken across two.
	cmd.Env = append(os.Environ(), "MANWIDTH=250", "MANPAGER=cat", "PAGER=cat", "LANG=C.UTF-8")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() != 0 {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
	}
	// groff prints "-" as U+2010 or U+2212 in UTF-8.
	text := strings.NewReplacer("\u2010", "-", "\u2212", "-").Replace(stdout.String())
	for _, want := range []string{"EXT-SETUP-ROOT(8)", "NAME", "SYNOPSIS", "ext-setup-root - prepare the real root"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	for _, c := range cliCommands {
		if !strings.Contains(text, "ext-setup-root "+c) {
			t.Errorf("rendered page has no synopsis for %q", c)
		}
		for _, o := range helpOptions(t, bin, c) {
			if !strings.Contains(text, o.name) {
				t.Errorf("rendered page does not document %s %s", c, o.name)
			}
		}
	}
}

func toolExists(name string) bool { _, err := exec.LookPath(name); return err == nil }
