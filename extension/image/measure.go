package image

import (
	"context"
	"os"
	"time"

	"github.com/ext-setup-root/ext-setup-root/internal/measure"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// setupMeasured is setup followed, for a new activation (not a reused
// device, not a failure), by the measurement systemd makes of its own:
// after the device is active, before the caller mounts it.
func (env setupEnv) setupMeasured(img *os.File, d *Dissected, o SetupOptions) (*Device, error) {
	dev, err := env.setup(img, d, o)
	if err != nil || dev.Reused || env.measure == nil {
		return dev, err
	}
	log := o.Log
	if log == nil {
		log = oplog.Discard()
	}
	env.measure(dev, d.Verity, signatureUsed(d.Verity, o), log)
	return dev, nil
}

// signatureUsed reports whether the set-up hands the root hash signature
// on (kernel or userspace check): the image carries one and the policy
// does not say to ignore it.
func signatureUsed(v *Verity, o SetupOptions) bool {
	return v.Signature != nil && len(v.Signature.PKCS7) > 0 && !o.IgnoreSignature
}

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
