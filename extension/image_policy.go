package extension

import (
	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
)

// Where an effective image policy came from, for log lines.
const (
	PolicyFromOptions = "command line"
	PolicyFromConfig  = "ImagePolicy= in the class's .conf"
	PolicyFromDefault = "systemd 262's class default"
)

// ResolveImagePolicy applies systemd 262's precedence (sysext.c's
// pick_image_policy): the policy given in Options (--image-policy=, or
// boot.toml's image_policy / the kernel command line through the boot
// stages), else ImagePolicy= from the class's .conf (an invalid one was
// already warned about and dropped by LoadConfig), else the class's
// default policy. systemd's strict default for images under /.extra/ in
// the initrd is not applied: ext-setup-root does not read /.extra.
func ResolveImagePolicy(opt *image.Policy, cfg config.Config, c *config.Class) (*image.Policy, string) {
	if opt != nil {
		return opt, PolicyFromOptions
	}
	if cfg.ImagePolicy != "" {
		if p, err := image.ParsePolicy(cfg.ImagePolicy); err == nil {
			return p, PolicyFromConfig
		}
	}
	return image.DefaultPolicy(c.Name, false), PolicyFromDefault
}

// imagePolicy is the policy this engine run applies to raw images,
// resolved once per call.
func (e *engine) imagePolicy() (*image.Policy, string, error) {
	if e.policy != nil {
		return e.policy, e.policyFrom, nil
	}
	cfg, err := config.LoadConfig(e.rfs, e.cls)
	if err != nil {
		return nil, "", err
	}
	e.policy, e.policyFrom = ResolveImagePolicy(e.opt.ImagePolicy, cfg, e.cls)
	return e.policy, e.policyFrom, nil
}
