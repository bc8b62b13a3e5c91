package extension

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
)

// TestResolveImagePolicy: options > ImagePolicy= > class default, as
// systemd's pick_image_policy.
func TestResolveImagePolicy(t *testing.T) {
	opt, _ := image.ParsePolicy("root=signed")
	if p, src := ResolveImagePolicy(opt, config.Config{ImagePolicy: "root=verity"}, config.Confext); p != opt || src != PolicyFromOptions {
		t.Fatal(src)
	}
	if p, src := ResolveImagePolicy(nil, config.Config{ImagePolicy: "root=verity"}, config.Confext); p.Text != "root=verity" || src != PolicyFromConfig {
		t.Fatal(src)
	}
	if p, src := ResolveImagePolicy(nil, config.Config{}, config.Sysext); p.Text != image.DefaultSysextPolicy || src != PolicyFromDefault {
		t.Fatal(p.Text, src)
	}
	if p, _ := ResolveImagePolicy(nil, config.Config{}, config.Confext); p.Text != image.DefaultConfextPolicy {
		t.Fatal(p.Text)
	}
}
