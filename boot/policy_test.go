package boot

import (
	"strings"
	"testing"
)

// TestImagePolicySources: boot.toml's image_policy is validated, the
// kernel command line's replaces it (an invalid one is reported and
// ignored), and both reach the engines' requests.
func TestImagePolicySources(t *testing.T) {
	c, err := ParseConfig(strings.NewReader(`image_policy = "root=signed+absent"`), "boot.toml")
	if err != nil || c.ImagePolicy != "root=signed+absent" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := ParseConfig(strings.NewReader(`image_policy = "root=bogus"`), "boot.toml"); err == nil || !strings.Contains(err.Error(), "image_policy") {
		t.Fatalf("invalid image_policy: %v", err)
	}
	cl, err := ParseCmdline(strings.NewReader("quiet ext_setup_root.image_policy==verity+signed\n"))
	if err != nil || cl.ImagePolicy != "=verity+signed" {
		t.Fatalf("%+v %v", cl, err)
	}
	bad, _ := ParseCmdline(strings.NewReader("ext-setup-root.image-policy=foo=bar"))
	if bad.ImagePolicy != "" || len(bad.Problems) != 1 || !strings.Contains(bad.Problems[0], "image-policy") {
		t.Fatalf("invalid cmdline policy: %+v", bad)
	}
	o := Options{ImagePolicy: c.ImagePolicy}
	if o.imagePolicy() != "root=signed+absent" {
		t.Fatal("boot.toml policy lost")
	}
	o.Cmdline = cl
	if o.imagePolicy() != "=verity+signed" {
		t.Fatal("command line does not win")
	}
	e := ExtEngine{Getenv: func(string) string { return "" }}
	opt, err := e.request(ExtRequest{Class: Confext, Root: t.TempDir(), ImagePolicy: o.imagePolicy()})
	if err != nil || opt.ImagePolicy == nil || opt.ImagePolicy.Text != "=verity+signed" {
		t.Fatalf("engine options: %+v %v", opt.ImagePolicy, err)
	}
}
