package boot

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/prepare"
	"github.com/ext-setup-root/ext-setup-root/test/systemd262"
)

// sdUnit is one of systemd 262's extension units as its file in the
// chroot says: the kernel command line conditions, whether it belongs to
// the initrd, and the command it runs.
type sdUnit struct {
	name       string
	conditions []string // "ConditionKernelCommandLine=..." lines
	initrd     bool     // ConditionPathExists=/etc/initrd-release
	exec       []string // ExecStart= words
}

// readSdUnit reads the unit file from the chroot. Only the lines the
// switch table needs are kept; nothing is copied by hand.
func readSdUnit(t *testing.T, chroot, name string) sdUnit {
	t.Helper()
	f, err := os.Open(filepath.Join(chroot, "usr/lib/systemd/system", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := sdUnit{name: name}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "ConditionKernelCommandLine="):
			u.conditions = append(u.conditions, line)
		case line == "ConditionPathExists=/etc/initrd-release":
			u.initrd = true
		case strings.HasPrefix(line, "ExecStart=") && u.exec == nil:
			u.exec = strings.Fields(strings.TrimPrefix(line, "ExecStart="))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(u.conditions) == 0 || len(u.exec) < 2 {
		t.Fatalf("%s: no ConditionKernelCommandLine= or ExecStart= (conditions %q, exec %q)", name, u.conditions, u.exec)
	}
	return u
}

// sdJudge answers "would systemd 262 run this unit's merge with this
// kernel command line?" with systemd's own code: the unit's conditions
// through `systemd-analyze condition`, then the tool's own check, by
// running the unit's command as the service manager would (it honours the
// switch only when $SYSTEMD_EXEC_PID matches, "*" being its test value)
// with the read-only verb list instead of refresh.
type sdJudge struct {
	t     *testing.T
	e     *systemd262.Env
	root  string // an empty root inside the chroot, for --root=
	cache map[string]bool
}

func (j *sdJudge) runs(u sdUnit, cmdline string) bool {
	j.t.Helper()
	key := u.name + "\x00" + cmdline
	if v, ok := j.cache[key]; ok {
		return v
	}
	env := []string{"SYSTEMD_PROC_CMDLINE=" + cmdline}
	r, err := j.e.Run(env, append([]string{"systemd-analyze", "condition"}, u.conditions...)...)
	if err != nil || (r.ExitCode != 0 && !strings.Contains(r.Output, "Conditions failed")) {
		j.t.Fatalf("%s: %v %s", u.name, err, r)
	}
	ok := r.ExitCode == 0
	if ok {
		argv := slices.Clone(u.exec)
		for i, a := range argv {
			switch {
			case a == "refresh":
				argv[i] = "list"
			case strings.HasPrefix(a, "--root="):
				argv[i] = "--root=" + j.root
			}
		}
		inInitrd := "0"
		if u.initrd {
			inInitrd = "1"
		}
		env = append(env, "SYSTEMD_EXEC_PID=*", "SYSTEMD_IN_INITRD="+inInitrd)
		r, err = j.e.Run(env, argv...)
		if err != nil || r.ExitCode != 0 {
			j.t.Fatalf("%s: %v %s", u.name, err, r)
		}
		ok = !strings.Contains(r.Output, "Disabled by the kernel command line option")
	}
	j.cache[key] = ok
	return ok
}

// switchRow is one kernel command line of the table, with what our own
// switches on it mean (systemd's units know nothing of those).
type switchRow struct {
	cmdline         string
	dryRun          bool
	preOff, postOff bool
}

// switchRows covers every documented switch (TestSwitchTableCoversDocs
// checks that) with its values, and systemd's switches in every spelling
// and combination that systemd 262 treats differently.
var switchRows = []switchRow{
	{cmdline: ""},
	{cmdline: "systemd.confext=0"},
	{cmdline: "systemd.confext=no"},
	{cmdline: "systemd.confext=off"},
	{cmdline: "systemd.confext=false"},
	{cmdline: "systemd.confext=OFF"},
	{cmdline: "systemd.confext=1"},
	{cmdline: "systemd.confext"},
	{cmdline: "systemd.confext=bogus"},
	{cmdline: `"systemd.confext=0"`},
	{cmdline: "systemd.confext=0 systemd.confext=1"},
	{cmdline: "systemd.confext=no systemd.confext=yes"},
	{cmdline: "systemd.confext=yes systemd.confext=n"},
	{cmdline: "rd.systemd.confext=0"},
	{cmdline: "rd.systemd.confext=false"},
	{cmdline: "systemd.confext=0 rd.systemd.confext=1"},
	{cmdline: "rd.systemd.confext=0 systemd.confext=1"},
	{cmdline: "systemd.sysext=0"},
	{cmdline: "systemd.sysext=n"},
	{cmdline: "systemd.sysext=0 systemd.sysext=1"},
	{cmdline: "systemd.sysext=f systemd.sysext=t"},
	{cmdline: "rd.systemd.sysext=0"},
	{cmdline: "systemd.sysext=0 rd.systemd.sysext=1"},
	{cmdline: "rd.systemd.sysext=off systemd.sysext"},
	{cmdline: "systemd.confext=0 systemd.sysext=0"},
	{cmdline: "ext-setup-root.stage.pre=0", preOff: true},
	{cmdline: "ext-setup-root.stage.pre=1"},
	{cmdline: "ext-setup-root.stage.post=0", postOff: true},
	{cmdline: "ext-setup-root.stage.post=off", postOff: true},
	{cmdline: "ext-setup-root.stage.pre=0 ext-setup-root.stage.post=no", preOff: true, postOff: true},
	{cmdline: "ext-setup-root.stage.pre=0 systemd.confext=0", preOff: true},
	{cmdline: "ext-setup-root.dry-run", dryRun: true},
	{cmdline: "ext_setup_root.dry_run=yes", dryRun: true},
	{cmdline: "ext-setup-root.dry-run=0"},
	{cmdline: "rd.systemd.confext=0 ext-setup-root.dry-run", dryRun: true},
	{cmdline: "ext-setup-root.debug"},
	{cmdline: "ext-setup-root.essential="},
	{cmdline: "ext-setup-root.essential=00-*default*,50-user"},
	{cmdline: "ext-setup-root.late-refresh=stock"},
	{cmdline: "ext-setup-root.late-refresh=ours systemd.confext=no"},
	{cmdline: "ext-setup-root.late-refresh=stock systemd.sysext=0"},
	{cmdline: "ext-setup-root.late-refresh=auto"},
	{cmdline: "ext-setup-root.prepare=0"},
	{cmdline: "ext-setup-root.image-policy=root=signed+absent"},
	{cmdline: "ext-setup-root.abslots=0"},
}

// ourDecisions runs the pre, post and late stages with fake engines on one
// kernel command line and reports which merges they asked for.
type ourDecisions struct {
	confextSysroot, sysextSysroot bool // pre or post merged/refreshed /sysroot's
	confextBooted, sysextBooted   bool // late stages refreshed (or handed over to the stock tool)
}

type recordingPreparer struct{ called *bool }

func (p recordingPreparer) Prepare(context.Context, PrepareRequest) (*prepare.Result, error) {
	*p.called = true
	return nil, nil
}

func runOurStages(t *testing.T, cmdline string) (d ourDecisions, prepared bool, log string) {
	t.Helper()
	cl, err := ParseCmdline(strings.NewReader(cmdline))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	ol := oplog.New(oplog.WriterSink{W: &buf})
	f := newFake()
	f.results[Confext] = ExtResult{Merged: []string{"00-flatcar-default", "50-user"}}
	f.results[Sysext] = ExtResult{Merged: []string{"oem-qemu"}}
	for _, st := range []Stage{StagePre, StagePost} {
		o := Options{Stage: st, Root: "/sysroot", Ext: f, Sel: f, RootOps: f, Log: ol, Cmdline: cl, DryRun: cl.DryRun}
		if st == StagePre {
			o.Prep = recordingPreparer{&prepared}
		}
		if _, err := Run(context.Background(), o); err != nil {
			t.Errorf("%q: stage %s: %v", cmdline, st, err)
		}
	}
	initrdCalls := f.calls
	f.calls = nil
	execd := map[Class]bool{}
	for _, st := range []Stage{StageLateConfext, StageLateSysext} {
		err := RunLate(context.Background(), LateOptions{Stage: st, Root: "/", Ext: f, Log: ol, Mode: cl.LateRefresh,
			Cmdline: cl, DryRun: cl.DryRun,
			ExecStock: func(argv []string) error { execd[Class(strings.TrimPrefix(argv[0], "systemd-"))] = true; return nil }})
		if err != nil {
			t.Errorf("%q: stage %s: %v", cmdline, st, err)
		}
	}
	did := func(calls []string, c Class) bool {
		return slices.Contains(calls, "merge "+string(c)) || slices.Contains(calls, "refresh "+string(c))
	}
	d.confextSysroot, d.sysextSysroot = did(initrdCalls, Confext), did(initrdCalls, Sysext)
	d.confextBooted = did(f.calls, Confext) || execd[Confext]
	d.sysextBooted = did(f.calls, Sysext) || execd[Sysext]
	return d, prepared, buf.String()
}

// TestSwitchTableSystemd262 runs every documented switch, with its
// values, through the pre, post and late stages and compares what they
// merge with what systemd 262's own units would do on the same kernel
// command line: systemd-confext-sysroot.service and
// systemd-sysext-sysroot.service for /sysroot (our pre and post),
// systemd-confext.service and systemd-sysext.service for the booted system
// (our late stages, whose drop-ins replace those units' ExecStart=). The
// -initrd units merge only the initrd's own hierarchies, which no stage of
// ours touches; they are judged too, to show that rd.* is theirs alone.
// systemd's answers come from its unit files and binaries in the chroot.
func TestSwitchTableSystemd262(t *testing.T) {
	e := systemd262.Require(t)
	r, cleanup, err := e.NewRoot("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	testutil.WriteTree(t, r.Host, map[string]string{"usr/lib/os-release": "ID=flatcar\nVERSION_ID=1\n", "etc/.keep": ""})
	j := &sdJudge{t: t, e: e, root: r.In, cache: map[string]bool{}}
	unit := func(n string) sdUnit { return readSdUnit(t, e.Chroot, n) }
	confextSysroot, sysextSysroot := unit("systemd-confext-sysroot.service"), unit("systemd-sysext-sysroot.service")
	confextBooted, sysextBooted := unit("systemd-confext.service"), unit("systemd-sysext.service")
	confextInitrd, sysextInitrd := unit("systemd-confext-initrd.service"), unit("systemd-sysext-initrd.service")

	for _, row := range switchRows {
		got, prepared, log := runOurStages(t, row.cmdline)
		cl, _ := ParseCmdline(strings.NewReader(row.cmdline))
		want := ourDecisions{
			confextSysroot: j.runs(confextSysroot, row.cmdline) && !row.dryRun && !(row.preOff && row.postOff),
			sysextSysroot:  j.runs(sysextSysroot, row.cmdline) && !row.dryRun && !row.postOff,
			confextBooted:  j.runs(confextBooted, row.cmdline) && !row.dryRun,
			sysextBooted:   j.runs(sysextBooted, row.cmdline) && !row.dryRun,
		}
		if got != want {
			t.Errorf("%q: ours %+v, systemd 262's units %+v\n%s", row.cmdline, got, want, log)
		}
		// rd.* is read exactly as systemd's -initrd units read it.
		if cl.InitrdConfextOff == j.runs(confextInitrd, row.cmdline) || cl.InitrdSysextOff == j.runs(sysextInitrd, row.cmdline) {
			t.Errorf("%q: InitrdConfextOff %v, InitrdSysextOff %v; systemd 262's -initrd units run: %v, %v", row.cmdline,
				cl.InitrdConfextOff, cl.InitrdSysextOff, j.runs(confextInitrd, row.cmdline), j.runs(sysextInitrd, row.cmdline))
		}
		// Our own switches' other effects.
		wantPrepared := !row.preOff && !strings.Contains(row.cmdline, "ext-setup-root.prepare=0")
		if prepared != wantPrepared {
			t.Errorf("%q: prepare step ran %v, want %v", row.cmdline, prepared, wantPrepared)
		}
	}
}

// TestSwitchTableCoversDocs: every switch README.md and docs/*.md name is
// in switchRows, so a newly documented switch cannot miss the table.
func TestSwitchTableCoversDocs(t *testing.T) {
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md")
	re := regexp.MustCompile("`((?:rd\\.)?systemd\\.(?:confext|sysext)|ext[-_]setup[-_]root\\.[a-z_.-]+)[=`\\s]")
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			seen[strings.TrimSuffix(m[1], ".")] = true
		}
	}
	if len(seen) < 10 {
		t.Fatalf("found only %d documented switches: %v", len(seen), seen)
	}
	for sw := range seen {
		found := false
		for _, row := range switchRows {
			if _, ok := kcmdline.ParseString(row.cmdline).Lookup(sw); ok {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("documented switch %s is not in the switch table (switchRows)", sw)
		}
	}
}
