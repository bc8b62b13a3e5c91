package image

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// verityTable is the parameter line of a dm-verity target, in the kernel's
// order (Documentation/admin-guide/device-mapper/verity.rst):
//
//	<version> <data_dev> <hash_dev> <data_block_size> <hash_block_size>
//	<num_data_blocks> <hash_start_block> <algorithm> <root_digest> <salt>
//	[<#opt_params> <opt_params>]
type verityTable struct {
	HashType      uint32 // table "version": 1 for the normal (non-Chrome OS) format
	DataDev       uint64 // dev_t
	HashDev       uint64
	DataBlockSize uint32
	HashBlockSize uint32
	DataBlocks    uint64
	HashStart     uint64 // in hash blocks
	Algorithm     string
	RootHash      []byte
	Salt          []byte
	// SigKeyDesc names a "user" key holding the PKCS#7 signature of the
	// hex root hash: the kernel checks it against its trusted keyrings
	// (CONFIG_DM_VERITY_VERIFY_ROOTHASH_SIG) when the table is loaded.
	SigKeyDesc string
}

func devString(dev uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
}

// Params formats the table line.
func (v verityTable) Params() string {
	salt := "-"
	if len(v.Salt) > 0 {
		salt = hex.EncodeToString(v.Salt)
	}
	s := fmt.Sprintf("%d %s %s %d %d %d %d %s %s %s", v.HashType, devString(v.DataDev), devString(v.HashDev),
		v.DataBlockSize, v.HashBlockSize, v.DataBlocks, v.HashStart, v.Algorithm, hex.EncodeToString(v.RootHash), salt)
	if v.SigKeyDesc != "" {
		s += " 2 root_hash_sig_key_desc " + v.SigKeyDesc
	}
	return s
}

// Sectors is the target length: the data area in 512-byte sectors.
func (v verityTable) Sectors() uint64 { return v.DataBlocks * uint64(v.DataBlockSize) / 512 }

// parseVerityParams reads the fields of a live verity table that decide
// whether it serves the same data: everything but the devices' numbers
// and the optional parameters (the kernel prints devices as MAJ:MIN).
func parseVerityParams(s string) (verityTable, error) {
	f := strings.Fields(s)
	if len(f) < 10 {
		return verityTable{}, fmt.Errorf("verity table %q: %d fields, want at least 10", s, len(f))
	}
	var v verityTable
	num := func(i int, bits int) uint64 {
		n, err := strconv.ParseUint(f[i], 10, bits)
		if err != nil {
			return 0
		}
		return n
	}
	v.HashType = uint32(num(0, 32))
	v.DataBlockSize, v.HashBlockSize = uint32(num(3, 32)), uint32(num(4, 32))
	v.DataBlocks, v.HashStart = num(5, 64), num(6, 64)
	v.Algorithm = f[7]
	var err error
	if v.RootHash, err = hex.DecodeString(f[8]); err != nil {
		return verityTable{}, fmt.Errorf("verity table root hash %q: %w", f[8], err)
	}
	if f[9] != "-" {
		if v.Salt, err = hex.DecodeString(f[9]); err != nil {
			return verityTable{}, fmt.Errorf("verity table salt %q: %w", f[9], err)
		}
	}
	if len(f) > 11 {
		for i := 11; i+1 < len(f); i++ {
			if f[i] == "root_hash_sig_key_desc" {
				v.SigKeyDesc = f[i+1]
			}
		}
	}
	return v, nil
}

// sameData reports whether a live table verifies the same data as want:
// same root hash, salt, algorithm, block sizes and data size. Such a
// device serves exactly the blocks the root hash commits to, whichever
// file backs it.
func (v verityTable) sameData(want verityTable) bool {
	return bytes.Equal(v.RootHash, want.RootHash) && bytes.Equal(v.Salt, want.Salt) && v.Algorithm == want.Algorithm &&
		v.HashType == want.HashType && v.DataBlockSize == want.DataBlockSize && v.HashBlockSize == want.HashBlockSize &&
		v.DataBlocks == want.DataBlocks
}

// verityDMName is the device-mapper name systemd 262 gives the verity
// device of a partition: the data partition node's file name, the disk
// sequence number of the loop device, "-verity" (loop0p1-12-verity).
// The disk sequence number keeps a name from a previous use of the same
// loop device from colliding.
func verityDMName(dataNode string, diskseq uint64) string {
	return fmt.Sprintf("%s-%d-verity", path.Base(dataNode), diskseq)
}

// verityDMUUID is the dm uuid libcryptsetup (and so systemd) sets on a
// verity device: "CRYPT-VERITY-", the verity superblock UUID without
// dashes, "-", the name. Tools that list devices by subsystem (udev
// rules, systemd, lsblk) recognise it by the prefix.
func verityDMUUID(sbUUID, name string) string {
	u := strings.ReplaceAll(strings.ToLower(sbUUID), "-", "")
	if u == "" {
		return "CRYPT-VERITY-" + name
	}
	return "CRYPT-VERITY-" + u + "-" + name
}

// isVerityUUID reports whether a dm uuid is one of a verity device set up
// by libcryptsetup, systemd or us.
func isVerityUUID(u string) bool { return strings.HasPrefix(u, "CRYPT-VERITY-") }
