package tpmlog

import (
	"fmt"
	"regexp"
)

// loopName matches the dm name systemd gives a verity device on a
// partition of a loop device: loop<N>p<M>-<loop disk sequence>-verity.
// The disk sequence grows with every attachment, and N is whichever loop
// device was free at that moment, so both differ between two boots that
// activate the same image: in the measured QEMU boots systemd 262
// activated the image a second time while its first loop device was still
// attached (loop1p1), ext-setup-root after detaching it (loop0p1 again;
// docs/measure.md, "How many records"). The partition number M is the
// image's own and must match.
var loopName = regexp.MustCompile(`^loop[0-9]+(p[0-9]+)-[0-9]+-verity$`)

// Key is what two boots' records of the same activation share: the word
// with the loop device number and disk sequence in the dm name replaced by
// "*" (loop*p1-*-verity), plus the
// fields that must not differ at all. bootId and timestamp are not part of
// it (they differ per boot by definition); the digest is not either (it is
// SHA256 of the word, which holds the disk sequence), but CheckVerity
// proved it matches the word.
type Key struct {
	NvIndex     uint32
	HashAlg     string
	ContentType string
	NvIndexName string
	EventType   string
	Word        string // with the disk sequence as "*"
}

// KeyOf returns r's comparison key, after CheckVerity accepted r.
func KeyOf(r Record) (Key, error) {
	if err := CheckVerity(r); err != nil {
		return Key{}, err
	}
	w, _ := r.Word()
	sw, _ := SplitWord(w)
	name := loopName.ReplaceAllString(sw.Name, "loop*$1-*-verity")
	return Key{
		NvIndex:     *r.NvIndex,
		HashAlg:     r.Digests[0].HashAlg,
		ContentType: r.ContentType,
		NvIndexName: r.Content.NvIndexName,
		EventType:   r.Content.EventType,
		Word:        "verity:" + name + ":" + sw.RootHash + ":" + sw.Signers,
	}, nil
}

// Compare compares ours, the verity records of a boot where ext-setup-root
// activated the images, with theirs, the records of a boot where
// systemd's own units did, field by field (Key: modulo the loop device number and disk sequence). It returns every
// difference; none means:
//   - every record of ours equals a record of theirs (modulo the disk
//     sequence), and
//   - every distinct record of theirs (distinct Key) appears in ours.
//
// The number of records is compared by the caller where it is known to be
// equal (docs/measure.md, "How many records").
func Compare(ours, theirs []Record) []error {
	var errs []error
	theirKeys := map[Key]bool{}
	for _, r := range theirs {
		k, err := KeyOf(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("systemd's log: %w", err))
			continue
		}
		theirKeys[k] = true
	}
	ourKeys := map[Key]bool{}
	for _, r := range ours {
		k, err := KeyOf(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("our log: %w", err))
			continue
		}
		ourKeys[k] = true
		if !theirKeys[k] {
			errs = append(errs, fmt.Errorf("our log: record %d (%s) matches no record of systemd's log", r.Seq, k.Word))
		}
	}
	for _, r := range theirs {
		k, err := KeyOf(r)
		if err == nil && !ourKeys[k] {
			errs = append(errs, fmt.Errorf("systemd's log: record %d (%s) has no record in ours", r.Seq, k.Word))
			ourKeys[k] = true // report each distinct record once
		}
	}
	return errs
}
