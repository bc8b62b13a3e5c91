package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/internal/measure"
	"github.com/ext-setup-root/ext-setup-root/test/qemu/pcrstub"
)

// pcrSocket is where systemd 262 and ext-setup-root ask for measurements.
// The QEMU guest boots without a TPM and a UKI, so systemd-pcrextend.socket
// is not active there (ConditionSecurity=measured-os) and the path is free
// for a stand-in that records the calls.
const pcrSocket = "/run/systemd/io.systemd.PCRExtend"

// startStub starts the stand-in, or returns nil (and says why) when the
// socket exists: a real measured boot's service is never replaced.
func startStub() *pcrstub.Stub {
	if _, err := os.Lstat(pcrSocket); err == nil {
		r("vdiff_measure", "skipped: "+pcrSocket+" exists (a measured boot)")
		return nil
	}
	s, err := pcrstub.Start(pcrSocket)
	if err != nil {
		fail("stand-in for io.systemd.PCRExtend: %v", err)
		return nil
	}
	return s
}

// dmNameDigits are the loop device number and disk sequence of a
// device-mapper name (loop3p1-42-verity): they differ between any two
// activations.
var dmNameDigits = regexp.MustCompile(`^loop[0-9]+p[0-9]+-[0-9]+-verity$`)

// takeWords reports the verity measurement calls made since the last take
// as vdiff_measure_<who> and returns them.
func takeWords(s *pcrstub.Stub, who string) []string {
	if s == nil {
		return nil
	}
	words, other := s.Take()
	for _, o := range other {
		fail("%s: unexpected call to io.systemd.PCRExtend: %s", who, o)
	}
	r("vdiff_measure_"+who, fmt.Sprintf("%d %s", len(words), strings.Join(words, " ")))
	return words
}

// compareWords checks each word systemd-confext 262 asked to have
// measured against the word our code builds (internal/measure) for the
// same image with systemd's device name: byte for byte, with the real
// signature. Then our merge's words, when it activated a device: the same
// fields but for the digits of the device name. The counts are reported,
// not compared: systemd 262 was seen activating the image twice per merge
// and twice on a refresh that skips, while
// we activate once and reuse a live device serving the same root hash
// (here the boot's own merge of the same image), which systemd does not
// measure either (docs/measure.md).
func compareWords(imagePath string, sd, ours []string) {
	if len(sd) == 0 {
		fail("systemd-confext 262 asked for no verity measurement: nothing to compare")
		return
	}
	f, err := os.Open(imagePath)
	if err != nil {
		fail("open %s: %v", imagePath, err)
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	d, err := image.Dissect(f, st.Size(), image.DissectOptions{})
	if err != nil || d.Verity == nil || d.Verity.Signature == nil {
		fail("dissect %s: %v (verity and a signature expected)", imagePath, err)
		return
	}
	for _, w := range sd {
		fs := strings.Split(w, ":")
		if len(fs) != 4 {
			fail("systemd's word without four fields: %q", w)
			continue
		}
		mine, err := measure.VerityWord(fs[1], d.Verity.RootHash, d.Verity.Signature.PKCS7)
		if err != nil {
			fail("our word for %s: %v", fs[1], err)
		} else if mine != w {
			fail("measured word differs: systemd %q, ours %q", w, mine)
		}
	}
	r("vdiff_measure_checked", fmt.Sprintf("%d of systemd's words equal ours", len(sd)))
	for _, w := range ours {
		compareWord(sd[0], w)
	}
}

func compareWord(sd, ours string) {
	fs, fo := strings.Split(sd, ":"), strings.Split(ours, ":")
	if len(fs) != 4 || len(fo) != 4 {
		fail("measured words without four fields: systemd %q, ours %q", sd, ours)
		return
	}
	for i, name := range []string{"prefix", "dm name", "root hash", "signers"} {
		a, b := fs[i], fo[i]
		if i == 1 {
			if !dmNameDigits.MatchString(a) || !dmNameDigits.MatchString(b) {
				fail("measured dm names not loopNpM-K-verity: systemd %q, ours %q", a, b)
			}
			continue
		}
		if a != b {
			fail("measured %s differs: systemd %q, ours %q", name, a, b)
		}
	}
	if fs[3] == "" {
		fail("systemd measured no signer for the signed image: the comparison covers less than it should")
	}
}
