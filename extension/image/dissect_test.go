package image

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

func dissectFile(t *testing.T, p string, o DissectOptions) (*Dissected, error) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	return Dissect(f, fi.Size(), o)
}

func TestDissectRepartDDIs(t *testing.T) {
	for _, s := range []ddiSpec{
		{Class: "confext", FS: "erofs", Signed: true},
		{Class: "confext", FS: "squashfs", Signed: true},
		{Class: "confext", FS: "erofs"},
		{Class: "confext", FS: "squashfs"},
		{Class: "sysext", FS: "erofs", Signed: true},
		{Class: "sysext", FS: "squashfs"},
		{Class: "sysext", FS: "erofs", Signed: true, Arch: "arm64"},
	} {
		name := s.Class + "-" + s.FS + map[bool]string{true: "-signed", false: ""}[s.Signed] + s.Arch
		t.Run(name, func(t *testing.T) {
			b := buildDDI(t, s)
			arch := s.Arch
			if arch == "" {
				arch = "x86-64"
			}
			d, err := dissectFile(t, b.Path, DissectOptions{Architecture: arch, AllowUsr: s.Class == "sysext"})
			if err != nil {
				t.Fatal(err)
			}
			if d.Data.Designator != "root" || d.Data.FSType != s.FS || !d.Data.ReadOnly {
				t.Errorf("data partition %+v, want read-only root %s", d.Data, s.FS)
			}
			if d.Verity == nil {
				t.Fatal("no verity")
			}
			if got := hex.EncodeToString(d.Verity.RootHash); got != b.RootHash {
				t.Errorf("root hash %s (from %s), repart says %s", got, d.Verity.RootHashSource, b.RootHash)
			}
			want := "partition UUIDs"
			if s.Signed {
				want = "root-verity-sig partition"
			}
			if d.Verity.RootHashSource != want {
				t.Errorf("root hash source %q, want %q", d.Verity.RootHashSource, want)
			}
			if (d.Verity.Signature != nil) != s.Signed {
				t.Errorf("signature %v, signed %v", d.Verity.Signature != nil, s.Signed)
			}
			sb := d.Verity.Superblock
			if sb.Algorithm != "sha256" || sb.HashType != 1 || sb.DataBlockSize != 4096 || sb.HashBlockSize != 4096 || len(sb.Salt) != 32 {
				t.Errorf("superblock %+v", sb)
			}
			if sb.DataBlocks*uint64(sb.DataBlockSize) > d.Data.Region.Size {
				t.Errorf("data blocks beyond the partition")
			}
			if s.Arch == "arm64" {
				// The x86-64 table must not see an arm64 image's root.
				if _, err := dissectFile(t, b.Path, DissectOptions{Architecture: "x86-64", AllowUsr: true}); err == nil {
					t.Error("arm64 DDI dissected as x86-64")
				}
			}
		})
	}
}

// FuzzDissect: whatever the bytes, Dissect returns an error or a
// dissection whose regions lie inside the image.
func FuzzDissect(f *testing.F) {
	img := mkGPT(gptSpec{Sectors: 256, Parts: []gptTestPart{
		{Type: x86Root, UUID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", First: 40, Last: 99},
		{Type: x86Verity, UUID: "12345678-9abc-def0-1234-56789abcdef0", First: 100, Last: 120},
	}})
	copy(img[40*512+1024:], []byte{0xe2, 0xe1, 0xf5, 0xe0})
	copy(img[100*512:], mkSB("sha256", 4096, 4096, 7, make([]byte, 32)))
	f.Add(img)
	f.Add(append([]byte("hsqs"), make([]byte, 4096)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Dissect(bytes.NewReader(b), int64(len(b)), DissectOptions{Architecture: "x86-64", AllowUsr: true})
		if err != nil {
			return
		}
		if d.Data.Region.Offset+d.Data.Region.Size > uint64(len(b)) {
			t.Fatalf("data region beyond the image: %+v", d.Data)
		}
		if d.Verity != nil && d.Verity.HashPath == "" && d.Verity.Hash.Offset+d.Verity.Hash.Size > uint64(len(b)) {
			t.Fatalf("hash region beyond the image: %+v", d.Verity.Hash)
		}
	})
}

// TestDissectBareWithSidecars: the data partition of a systemd-repart
// DDI as a bare image with its hash partition as the .verity sidecar,
// the root hash from a .roothash sidecar or the xattr value and the
// signature as .roothash.p7s, as veritysetup-made sidecar images are.
func TestDissectBareWithSidecars(t *testing.T) {
	b := buildDDI(t, ddiSpec{Class: "confext", FS: "squashfs", Signed: true, Split: true})
	data, verity := b.Path+".root.raw", b.Path+".root-verity.raw"
	full, err := dissectFile(t, b.Path, DissectOptions{Architecture: "x86-64"})
	if err != nil {
		t.Fatal(err)
	}
	vf, err := os.Open(verity)
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	vi, _ := vf.Stat()
	hexHash := hex.EncodeToString(full.Verity.RootHash)
	for _, src := range []string{".roothash sidecar", "user.verity.roothash xattr"} {
		o := DissectOptions{VerityFile: vf, VerityFileSize: vi.Size(), VerityPath: "/usr/lib/confexts/x.verity",
			RootHashSigFile: bytes.NewReader(full.Verity.Signature.PKCS7)}
		if src == ".roothash sidecar" {
			o.RootHashFile = strings.NewReader(hexHash + "\n")
		} else {
			o.RootHashXattr = hexHash
		}
		d, err := dissectFile(t, data, o)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if d.Data.FSType != "squashfs" || d.Verity == nil || d.Verity.HashPath != "/usr/lib/confexts/x.verity" ||
			d.Verity.RootHashSource != src || !bytes.Equal(d.Verity.RootHash, full.Verity.RootHash) ||
			d.Verity.Superblock.DataBlocks != full.Verity.Superblock.DataBlocks || d.Verity.Signature == nil {
			t.Fatalf("%s: %+v %+v", src, d.Data, d.Verity)
		}
		if _, err := VerifyRootHashSignature(d.Verity.RootHash, d.Verity.Signature, trustFrom(t, b.Cert)); err != nil {
			t.Fatalf("%s: sidecar signature: %v", src, err)
		}
	}
	// Without a root hash the .verity sidecar is refused, and a root hash
	// without the sidecar too: never used unverified.
	if _, err := dissectFile(t, data, DissectOptions{VerityFile: vf, VerityFileSize: vi.Size()}); err == nil {
		t.Error(".verity without root hash accepted")
	}
	if _, err := dissectFile(t, data, DissectOptions{RootHashXattr: hexHash}); err == nil {
		t.Error("root hash without .verity accepted")
	}
}
