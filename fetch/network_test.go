package fetch

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// TestNetworkOnlyWhenNeeded: a selection with nothing missing starts no
// network; one with two missing images starts it once, before the first
// download.
func TestNetworkOnlyWhenNeeded(t *testing.T) {
	e := newEnv(t)
	testutil.WriteTree(t, e.root, map[string]string{
		"oem/oem-release":                             "ID=test\n",
		"oem/sysext/active-oem-test":                  "",
		"oem/sysext/oem-test-" + testVersion + ".raw": "present",
	})
	starts := 0
	f := &Fetcher{Config: e.cfg, Cmdline: kcmdline.ParseString(""), Log: oplog.New(oplog.WriterSink{W: &e.log}), Check: fakeCheck,
		Network: func(context.Context) error { starts++; return nil }}
	if _, err := abslots.Run(context.Background(), abslots.Options{Root: e.root, Fetcher: f, Cmdline: strings.NewReader("")}); err != nil {
		t.Fatal(err)
	}
	if starts != 0 {
		t.Fatalf("network started %d times with nothing missing", starts)
	}
	testutil.WriteTree(t, e.root, map[string]string{"usr/share/flatcar/enabled-sysext.conf": "zfs\nwasm\n"})
	img := fakeImage("flatcar", testVersion, arch)
	e.serve("flatcar-zfs", buildPayload(t, img, payloadtest.KeyA()))
	p, err := abslots.Run(context.Background(), abslots.Options{Root: e.root, Fetcher: f, Cmdline: strings.NewReader("")})
	if err != nil {
		t.Fatal(err)
	}
	if starts != 1 {
		t.Fatalf("network started %d times for two missing images", starts)
	}
	if len(p.Missing) != 1 || p.Missing[0].Name != "wasm" {
		t.Fatalf("after the fetch: missing %+v (zfs fetched, wasm 404)", p.Missing)
	}
}

// TestStartNetworkEachUnit: each network unit is started on its own, and
// one the initrd does not have (resolved on an OS without it) is skipped
// instead of failing the start of networkd with it; a unit that exists
// and fails to start is reported.
func TestStartNetworkEachUnit(t *testing.T) {
	old := systemctl
	t.Cleanup(func() { systemctl = old })
	var calls []string
	fail := ""
	systemctl = func(_ context.Context, args ...string) ([]byte, error) {
		calls = append(calls, strings.Join(args, " "))
		u := args[len(args)-1]
		if args[0] == "show" {
			if u == "systemd-resolved.service" {
				return []byte("not-found\n"), nil
			}
			return []byte("loaded\n"), nil
		}
		if u == fail {
			return []byte("Job failed"), errors.New("exit status 1")
		}
		return nil, nil
	}
	if err := StartNetwork(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "show --property=LoadState --value systemd-networkd.service|start --quiet systemd-networkd.service|show --property=LoadState --value systemd-resolved.service"
	if got := strings.Join(calls, "|"); got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	fail = "systemd-networkd.service"
	err := StartNetwork(context.Background())
	if err == nil || !strings.Contains(err.Error(), "systemctl start systemd-networkd.service") {
		t.Errorf("failed start of networkd: %v", err)
	}
}
