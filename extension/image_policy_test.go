package extension

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
)

// TestResolveImagePolicy: options > ImagePolicy= > class default, as
// systemd's pick_image_policy.
func TestResolveImagePolicy(t *testing.T) {
	opt, _ := image.ParsePolicy("root=signed")
	if p, src := ResolveImagePolicy(opt, Config{ImagePolicy: "root=verity"}, Confext); p != opt || src != PolicyFromOptions {
		t.Fatal(src)
	}
	if p, src := ResolveImagePolicy(nil, Config{ImagePolicy: "root=verity"}, Confext); p.Text != "root=verity" || src != PolicyFromConfig {
		t.Fatal(src)
	}
	if p, src := ResolveImagePolicy(nil, Config{}, Sysext); p.Text != image.DefaultSysextPolicy || src != PolicyFromDefault {
		t.Fatal(p.Text, src)
	}
	if p, _ := ResolveImagePolicy(nil, Config{}, Confext); p.Text != image.DefaultConfextPolicy {
		t.Fatal(p.Text)
	}
}
