package image

import (
	"strings"

	"github.com/ext-setup-root/ext-setup-root/release"
)

// ArchTypes are the Discoverable Partitions Specification type GUIDs of
// one architecture (lowercase text form).
type ArchTypes struct {
	Root, RootVerity, RootVeritySig string
	Usr, UsrVerity, UsrVeritySig    string
}

// archTypes is the one table of architecture-specific partition types,
// keyed by systemd's architecture names (release.ArchitectureFromUname
// gives the same names for ARCHITECTURE= in extension-release files).
// Values from the UAPI.2 Discoverable Partitions Specification.
var archTypes = map[string]ArchTypes{
	"x86-64": {
		Root: "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", RootVerity: "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5", RootVeritySig: "41092b05-9fc8-4523-994f-2def0408b176",
		Usr: "8484680c-9521-48c6-9c11-b0720656f69e", UsrVerity: "77ff5f63-e7b6-4633-acf4-1565b864c0e6", UsrVeritySig: "e7bb33fb-06cf-4e81-8273-e543b413e2e2",
	},
	"arm64": {
		Root: "b921b045-1df0-41c3-af44-4c6f280d3fae", RootVerity: "df3300ce-d69f-4c92-978c-9bfb0f38d820", RootVeritySig: "6db69de6-29f4-4758-a7a5-962190f00ce3",
		Usr: "b0e01050-ee5f-4390-949a-9101b17104e9", UsrVerity: "6e11a4e7-fbca-4ded-b9e9-e1a512bb664e", UsrVeritySig: "c23ce4ff-44bd-4b00-b2d4-b41b3419e02a",
	},
	"x86": {
		Root: "44479540-f297-41b2-9af7-d131d5f0458a", RootVerity: "d13c5d3b-b5d1-422a-b29f-9454fdc89d76", RootVeritySig: "5996fc05-109c-48de-808b-23fa0830b676",
		Usr: "75250d76-8cc6-458e-bd66-bd47cc81a812", UsrVerity: "8f461b0d-14ee-4e81-9aa9-049b6fb97abd", UsrVeritySig: "974a71c0-de41-43c3-be5d-5c5ccd1ad2c0",
	},
	"arm": {
		Root: "69dad710-2ce4-4e3c-b16c-21a1d49abed3", RootVerity: "7386cdf2-203c-47a9-a498-f2ecce45a2d6", RootVeritySig: "42b0455f-eb11-491d-98d3-56145ba9d037",
		Usr: "7d0359a3-02b3-4f0a-865c-654403e70625", UsrVerity: "c215d751-7bcd-4649-be90-6627490a4c05", UsrVeritySig: "d7ff812f-37d1-4902-a810-d76ba57b975a",
	},
	"riscv64": {
		Root: "72ec70a6-cf74-40e6-bd49-4bda08e8f224", RootVerity: "b6ed5582-440b-4209-b8da-5ff7c419ea3d", RootVeritySig: "efe0f087-ea8d-4469-821a-4c2a96a8386a",
		Usr: "beaec34b-8442-439b-a40b-984381ed097d", UsrVerity: "8f1056be-9b05-47c4-81d6-be53128e5b54", UsrVeritySig: "d2f9000a-7a18-453f-b5cd-4d32f77a7b32",
	},
	"ppc64-le": {
		Root: "c31c45e6-3f39-412e-80fb-4809c4980599", RootVerity: "906bd944-4589-4aae-a4e4-dd983917446a", RootVeritySig: "d4a236e7-e873-4c07-bf1d-bf6cf7f1c3c6",
		Usr: "15bb03af-77e7-4d4a-b12b-c0d084f7491c", UsrVerity: "ee2b9983-21e8-4153-86d9-b6901a54d1ce", UsrVeritySig: "c8bfbd1e-268e-4521-8bba-bf314c399557",
	},
	"s390x": {
		Root: "5eead9a9-fe09-4a1e-a1d7-520d00531306", RootVerity: "b325bfbe-c7be-4ab8-8357-139e652d2f6b", RootVeritySig: "c80187a5-73a3-491a-901a-017c3fa953e9",
		Usr: "8a4f5770-50aa-4ed3-874a-99b710db6fea", UsrVerity: "31741cc4-1a2a-4111-a581-e00b447d2d06", UsrVeritySig: "3f324816-667b-46ae-86ee-9b0c0c6c11b4",
	},
	"loongarch64": {
		Root: "77055800-792c-4f94-b39a-98c91b762bb6", RootVerity: "f3393b22-e9af-4613-a948-9d3bfbd0c535", RootVeritySig: "5afb67eb-ecc8-4f85-ae8e-ac1e7c50e7d0",
		Usr: "e611c702-575c-4cbe-9a46-434fa0bf7e3f", UsrVerity: "f46b2c26-59ae-48f0-9106-c50ed47f673d", UsrVeritySig: "b024f315-d330-444c-8461-44bbde524e99",
	},
}

// NativeArchitecture is systemd's name for this binary's architecture
// (release.Arches, the one table of architecture names).
func NativeArchitecture() string { return release.NativeArchitecture() }

// TypesFor returns the partition types of arch (systemd's name).
func TypesFor(arch string) (ArchTypes, bool) {
	t, ok := archTypes[arch]
	return t, ok
}

// genericTypes are the architecture-independent partition types the image
// policy knows (so a policy can require their absence).
var genericTypes = map[string]string{
	"c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "esp",
	"bc13c2ff-59e6-4262-a352-b275fd6f7172": "xbootldr",
	"0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "swap",
	"933ac7e1-2eb4-4f13-b844-0e14e2aef915": "home",
	"3b8f8425-20e0-4f3b-907f-1a25a76f98e8": "srv",
	"4d21b016-b534-45c2-a9fb-5c16e091fd2d": "var",
	"7ec6f557-3bc5-4aca-b293-16ef5df639d1": "tmp",
}

// Designator returns the designator of a partition type GUID for arch
// ("root", "usr-verity", "esp", ...), "" when the type is not one of
// them.
func Designator(arch, typeGUID string) string {
	typeGUID = strings.ToLower(typeGUID)
	if d, ok := genericTypes[typeGUID]; ok {
		return d
	}
	t, ok := archTypes[arch]
	if !ok {
		return ""
	}
	switch typeGUID {
	case t.Root:
		return "root"
	case t.RootVerity:
		return "root-verity"
	case t.RootVeritySig:
		return "root-verity-sig"
	case t.Usr:
		return "usr"
	case t.UsrVerity:
		return "usr-verity"
	case t.UsrVeritySig:
		return "usr-verity-sig"
	}
	return ""
}
