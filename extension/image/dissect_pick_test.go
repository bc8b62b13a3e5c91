package image

import (
	"bytes"
	"strings"
	"testing"
)

// putSquashfs writes a squashfs magic at the start of sector first so
// DetectFS finds a file system there.
func putSquashfs(b []byte, first uint64) { copy(b[first*512:], "hsqs") }

// TestDissectPicksNewestLabel: of several root partitions, systemd 262
// takes the one whose label is the newest version (strverscmp_improved;
// an empty label is the oldest, equal labels keep the first), skips those
// flagged no-auto (GPT attribute bit 63), and with a root hash known
// before dissection takes only the partition whose UUID it selects.
func TestDissectPicksNewestLabel(t *testing.T) {
	const (
		u1 = "aaaaaaaa-0000-0000-0000-000000000001"
		u2 = "aaaaaaaa-0000-0000-0000-000000000002"
		u3 = "aaaaaaaa-0000-0000-0000-000000000003"
	)
	mk := func(parts ...gptTestPart) *bytes.Reader {
		for i := range parts {
			parts[i].Type = x86Root
			parts[i].First, parts[i].Last = uint64(100+200*i), uint64(299+200*i)
		}
		b := mkGPT(gptSpec{Parts: parts})
		for _, p := range parts {
			if p.UUID != u3 { // u3 holds no file system: picking it fails differently
				putSquashfs(b, p.First)
			}
		}
		return bytes.NewReader(b)
	}
	for _, tc := range []struct {
		name  string
		parts []gptTestPart
		xattr string
		want  string // UUID of the data partition, "" for an error
	}{
		{"newer version later", []gptTestPart{{UUID: u1, Name: "root_1.9"}, {UUID: u2, Name: "root_1.10"}}, "", u2},
		{"newer version first", []gptTestPart{{UUID: u1, Name: "root_2"}, {UUID: u2, Name: "root_1.10"}}, "", u1},
		{"pre-release older", []gptTestPart{{UUID: u1, Name: "root_2~rc1"}, {UUID: u2, Name: "root_2"}}, "", u2},
		{"equal labels keep the first", []gptTestPart{{UUID: u1, Name: "root"}, {UUID: u2, Name: "root"}}, "", u1},
		{"empty label oldest", []gptTestPart{{UUID: u1}, {UUID: u2, Name: "0"}}, "", u2},
		{"no-auto skipped", []gptTestPart{{UUID: u1, Name: "root_1"}, {UUID: u2, Name: "root_9", Attrs: gptFlagNoAuto}}, "", u1},
		{"all no-auto", []gptTestPart{{UUID: u1, Name: "root_1", Attrs: gptFlagNoAuto}}, "", ""},
		{"root hash selects", []gptTestPart{{UUID: u1, Name: "root_1"}, {UUID: u3, Name: "root_9"}}, "aaaaaaaa000000000000000000000001" + strings.Repeat("ab", 16), u1},
		{"root hash selects none", []gptTestPart{{UUID: u2, Name: "root_1"}}, "aaaaaaaa000000000000000000000001" + strings.Repeat("ab", 16), ""},
	} {
		r := mk(tc.parts...)
		d, err := Dissect(r, r.Size(), DissectOptions{Architecture: "x86-64", RootHashXattr: tc.xattr})
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: dissected (data %s), want an error", tc.name, d.Data.UUID)
			} else if !strings.Contains(err.Error(), "GPT has no root partition") {
				t.Errorf("%s: error %v does not say what is missing", tc.name, err)
			}
			continue
		}
		// With an xattr root hash but no -verity partition the image is
		// refused after the pick; had the pick taken u3 (the newer label,
		// no file system) the error would name the missing file system.
		if tc.xattr != "" {
			if err == nil || !strings.Contains(err.Error(), "no root-verity partition") {
				t.Errorf("%s: %v, want the missing -verity refusal after the pick", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d.Data.UUID != tc.want {
			t.Errorf("%s: data partition %s (%q), want %s", tc.name, d.Data.UUID, d.Data.Label, tc.want)
		}
	}
}
