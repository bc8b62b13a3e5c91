package image

import (
	"context"
	"time"

	"github.com/ext-setup-root/ext-setup-root/internal/measure"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// measureVerity asks systemd to measure the dm-verity device just
// activated, as systemd 262 does after each new activation in its dissect
// code (and before the mount): the word "verity:<dm name>:<root hash>:
// <signers>" into the "verity" NvPCR, event type dm-verity, through
// io.systemd.PCRExtend, which writes the NvPCR and the log record. The
// signers are measured when the signature was part of the activation
// (signed: the policy asked for "signed"), whichever check accepted it.
// Every failure (no socket: not a measured boot; no TPM; no NvPCR; a
// signature that does not parse) is logged at debug level and the
// activation goes on, as systemd's does.
func measureVerity(dev *Device, v *Verity, signed bool, log *oplog.Logger) {
	var sig []byte
	if signed {
		sig = v.Signature.PKCS7
	}
	word, err := measure.VerityWord(dev.Name, v.RootHash, sig)
	if err != nil {
		log.Debugf("dm-verity device %s not measured: %v", dev.Name, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), measure.Timeout)
	defer cancel()
	start := time.Now()
	if err := measure.ExtendVerity(ctx, paths.PCRExtendSocket, word); err != nil {
		log.Debugf("%s not measured: %v", word, err)
		return
	}
	log.Infof("measured %s into NvPCR %s through %s (%s)", word, measure.VerityNvPCR, paths.PCRExtendSocket,
		time.Since(start).Round(time.Microsecond))
}
