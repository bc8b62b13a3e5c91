package qemu

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteMarkdownTable: the soaks' tables are intro, header and one line
// per row, in a directory created on the way (no guest needed).
func TestWriteMarkdownTable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out", "t.md")
	writeMarkdownTable(t, p, "# T\n\n", "| a |\n|---|\n", []string{"| 1 |", "| 2 |"})
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# T\n\n| a |\n|---|\n| 1 |\n| 2 |\n"; string(got) != want {
		t.Fatalf("table %q, want %q", got, want)
	}
}
