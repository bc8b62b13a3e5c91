package image

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// mkSB builds a veritysetup format 1 superblock.
func mkSB(alg string, dbs, hbs uint32, blocks uint64, salt []byte) []byte {
	b := make([]byte, 512)
	copy(b, "verity\x00\x00")
	le := binary.LittleEndian
	le.PutUint32(b[8:], 1)
	le.PutUint32(b[12:], 1)
	copy(b[16:], []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	copy(b[32:], alg)
	le.PutUint32(b[64:], dbs)
	le.PutUint32(b[68:], hbs)
	le.PutUint64(b[72:], blocks)
	le.PutUint16(b[80:], uint16(len(salt)))
	copy(b[88:], salt)
	return b
}

func TestParseVeritySuperblock(t *testing.T) {
	sb, err := ParseVeritySuperblock(bytes.NewReader(mkSB("sha256", 4096, 4096, 100, make([]byte, 32))))
	if err != nil || sb.Algorithm != "sha256" || sb.DataBlocks != 100 || len(sb.Salt) != 32 || sb.UUID != "01020304-0506-0708-090a-0b0c0d0e0f10" {
		t.Fatalf("%+v %v", sb, err)
	}
	// 100 blocks, 128 sha256 digests per 4 KiB block: one hash block.
	if n, _ := HashTreeSize(sb); n != 4096 {
		t.Errorf("tree %d", n)
	}
	sb.DataBlocks = 128*128 + 1 // two levels: 129 + 2 + 1 blocks
	if n, _ := HashTreeSize(sb); n != (129+2+1)*4096 {
		t.Errorf("tree %d", n)
	}
	for _, c := range []struct {
		b    []byte
		rule string
	}{
		{mkSB("sha256", 4096, 4096, 0, nil), "data block count is 0"},
		{mkSB("md5", 4096, 4096, 1, nil), "not one of"},
		{mkSB("sha256", 4000, 4096, 1, nil), "data block size 4000"},
		{mkSB("sha256", 4096, 1<<20, 1, nil), "hash block size 1048576"},
		{mkSB("sha256", 4096, 4096, 1<<62, nil), "overflows"},
		{mkSB("", 4096, 4096, 1, nil), "algorithm name is empty"},
		{append([]byte("veritx"), make([]byte, 506)...), "magic"},
		{mkSB("sha256", 4096, 4096, 1, nil)[:100], "cannot read"},
	} {
		if _, err := ParseVeritySuperblock(bytes.NewReader(c.b)); err == nil || !strings.Contains(err.Error(), c.rule) {
			t.Errorf("%q: %v", c.rule, err)
		}
	}
	big := mkSB("sha256", 4096, 4096, 1, nil)
	binary.LittleEndian.PutUint16(big[80:], 300)
	if _, err := ParseVeritySuperblock(bytes.NewReader(big)); err == nil || !strings.Contains(err.Error(), "salt size 300") {
		t.Errorf("salt: %v", err)
	}
	if err := checkVerityGeometry(sb, 4096, 1<<30); err == nil {
		t.Error("data area too small accepted")
	}
}

func FuzzParseVeritySuperblock(f *testing.F) {
	f.Add(mkSB("sha256", 4096, 4096, 100, make([]byte, 32)))
	f.Add(mkSB("sha1", 512, 512, 1, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := ParseVeritySuperblock(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(sb.Salt) > 256 || sb.DataBlocks == 0 {
			t.Fatalf("%+v", sb)
		}
		if _, err := HashTreeSize(sb); err != nil {
			t.Fatal(err)
		}
	})
}
