// Command confext benchmarks ext-setup-root's confext merge against the real
// systemd-confext 262 in the same run, on the same inputs (make bench-confext):
// merge time for 1, 8 and 64 confexts (directories and squashfs alternating,
// Flatcar layout, --mutable=yes), unchanged refresh, peak RSS (wait4 rusage
// maxrss of the process tree), the static binary size, and the /etc window
// probe during forced refreshes. It prints a markdown table and writes it to
// -out. It must run as root; it re-executes itself in a private mount
// namespace so nothing it mounts reaches the host.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	sd "github.com/ext-setup-root/ext-setup-root/test/systemd262"
)

// nsEnv marks the re-executed child; its value is the parent's mount ns.
const nsEnv = "EXT_SETUP_ROOT_BENCH_MOUNTNS"

type options struct {
	bin, out, chroot  string
	runs              int
	counts            []int
	windowOurs, winSD int
	// scale: only measure merge and unchanged refresh for these counts
	// and draw them (-scale-out table, -scale-svg plot).
	scale              []int
	scaleOut, scaleSVG string
}

func main() {
	var o options
	var counts string
	flag.StringVar(&o.bin, "bin", "bin/ext-setup-root", "ext-setup-root binary (static, from make build)")
	flag.StringVar(&o.out, "out", "out/bench-confext.md", "markdown output file")
	flag.StringVar(&o.chroot, "chroot", sd.ChrootDir(), "systemd 262 chroot (scripts/prepare-systemd262.sh)")
	flag.IntVar(&o.runs, "runs", 5, "runs per measurement (the median is reported)")
	flag.StringVar(&counts, "counts", "1,8,64", "numbers of confexts to merge")
	flag.IntVar(&o.windowOurs, "window-ours", 1000, "forced refreshes of ours in the window probe")
	flag.IntVar(&o.winSD, "window-systemd", 200, "forced refreshes of systemd's in the window probe")
	var scale string
	flag.StringVar(&scale, "scale", "", "instead of the table: merge and unchanged refresh for these numbers of images (e.g. 1,2,4,...,128), drawn as SVG")
	flag.StringVar(&o.scaleOut, "scale-out", "out/bench-scale.md", "table of the -scale run")
	flag.StringVar(&o.scaleSVG, "scale-svg", "out/bench-scale.svg", "plot of the -scale run")
	flag.Parse()
	parse := func(flagName, list string) []int {
		var out []int
		for _, c := range strings.Split(list, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(c))
			if err != nil || n < 1 {
				fatalf("bad -%s %q", flagName, list)
			}
			out = append(out, n)
		}
		return out
	}
	o.counts = parse("counts", counts)
	if scale != "" {
		o.scale = parse("scale", scale)
	}
	if os.Geteuid() != 0 {
		fatalf("must run as root (mounts, loop devices, chroot)")
	}
	if os.Getenv(nsEnv) == "" {
		reexec()
		return
	}
	// The child is in its own mount namespace: make everything private so
	// no mount propagates back to the host.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		fatalf("make / rprivate: %v", err)
	}
	if err := run(o); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-confext: "+format+"\n", args...)
	os.Exit(1)
}

// reexec runs this program again in a new mount namespace.
func reexec() {
	self, _ := os.Readlink("/proc/self/ns/mnt")
	exe, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), nsEnv+"="+self)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fatalf("re-exec in a mount namespace: %v", err)
	}
}

// tool abstracts the two implementations for the measurements.
type tool struct {
	name string
	run  func(r sd.Root, args ...string) (sd.Result, error)
	// argv is the command line (host view) and env the environment that
	// rss runs under GNU time.
	argv func(r sd.Root, args ...string) []string
	env  func(r sd.Root) []string
}

// rss runs the tool under GNU time and returns its peak RSS in KiB. GNU time
// forks (a copy of its own small address space) before exec, so its floor
// is about 1 MiB; measuring from this Go process through wait4 would not
// work: Go starts children sharing its address space until exec, and the
// kernel carries that high-water mark into the child's ru_maxrss.
func rss(t tool, r sd.Root, args ...string) (int64, error) {
	f, err := os.CreateTemp("", "bench-rss-")
	if err != nil {
		return 0, err
	}
	f.Close()
	defer os.Remove(f.Name())
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", f.Name()}, t.argv(r, args...)...)...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat"}, t.env(r)...)
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, short(string(out)))
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// rssBench returns the peak RSS of merge and of an unchanged refresh.
func rssBench(t tool, r sd.Root) (int64, error) {
	defer func() {
		t.run(r, "unmerge")
		sd.UnmountBelow(filepath.Join(r.Host, "etc"))
	}()
	m, err := rss(t, r, "--mutable=yes", "merge")
	if err != nil {
		return 0, err
	}
	f, err := rss(t, r, "--mutable=yes", "refresh")
	if err != nil {
		return 0, err
	}
	return max(m, f), nil
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// cell is one measurement: a median duration or an error text.
type cell struct {
	d   time.Duration
	err string
}

func (c cell) String() string {
	if c.err != "" {
		return "error: " + c.err
	}
	return fmtDur(c.d)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}

func short(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return strings.ReplaceAll(s, "|", "/")
}

// mergeBench measures every tool on the same root, interleaved run by run
// so that load changes on the machine hit all tools alike: per run and tool,
// `merge` (timed), one `refresh` of the unchanged merge (timed; the overlay's
// unique mount id must stay the same, i.e. a real skip), `unmerge`
// (untimed). It returns the medians per tool.
func mergeBench(tools []tool, r sd.Root, runs int) (merge, refresh []cell) {
	merge, refresh = make([]cell, len(tools)), make([]cell, len(tools))
	md, rd := make([][]time.Duration, len(tools)), make([][]time.Duration, len(tools))
	etc := filepath.Join(r.Host, "etc")
	fail := func(what string, res sd.Result, err error) string {
		if err != nil {
			return what + ": " + err.Error()
		}
		return fmt.Sprintf("%s exit %d: %s", what, res.ExitCode, short(res.Output))
	}
	for i := 0; i < runs; i++ {
		for k, t := range tools {
			if merge[k].err != "" {
				continue
			}
			res, err := t.run(r, "--mutable=yes", "merge")
			if err != nil || res.ExitCode != 0 {
				merge[k].err = fail("merge", res, err)
				refresh[k].err = "no merge"
				t.run(r, "unmerge")
				sd.UnmountBelow(etc)
				continue
			}
			md[k] = append(md[k], res.Elapsed)
			if refresh[k].err == "" {
				before, _ := sd.UniqueMountID(etc)
				res, err := t.run(r, "--mutable=yes", "refresh")
				now, _ := sd.UniqueMountID(etc)
				switch {
				case err != nil || res.ExitCode != 0:
					refresh[k].err = fail("refresh", res, err)
				case now != before:
					refresh[k].err = "refresh of an unchanged merge replaced it (did not skip)"
				default:
					rd[k] = append(rd[k], res.Elapsed)
				}
			}
			if res, err := t.run(r, "unmerge"); err != nil || res.ExitCode != 0 {
				merge[k].err = fail("unmerge", res, err)
			}
			sd.UnmountBelow(etc)
		}
	}
	for k := range tools {
		if merge[k].err == "" {
			merge[k].d = median(md[k])
		}
		if refresh[k].err == "" {
			refresh[k].d = median(rd[k])
		}
	}
	return merge, refresh
}

func ratio(a, b cell) string {
	if a.err != "" || b.err != "" || b.d == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", float64(a.d)/float64(b.d))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func run(o options) error {
	if o.chroot == "" {
		return fmt.Errorf("no systemd 262 chroot: run make systemd262-root or pass -chroot")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	binSt, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("binary: %w (run make build)", err)
	}
	e, err := sd.Setup(o.chroot)
	if err != nil {
		return err
	}
	ours := tool{name: "ext-setup-root",
		run: func(r sd.Root, args ...string) (sd.Result, error) {
			return sd.Ours(bin, r.OurEnv, append([]string{"confext", "--root=" + r.Host}, args...)...)
		},
		argv: func(r sd.Root, args ...string) []string {
			return append([]string{bin, "confext", "--root=" + r.Host}, args...)
		},
		env: func(r sd.Root) []string { return r.OurEnv },
	}
	sysd := tool{name: "systemd-confext",
		run: func(r sd.Root, args ...string) (sd.Result, error) {
			return e.Confext(nil, append([]string{"--root=" + r.In}, args...)...)
		},
		argv: func(r sd.Root, args ...string) []string {
			return append([]string{"/usr/sbin/chroot", e.Chroot, "/usr/bin/systemd-confext", "--root=" + r.In}, args...)
		},
		env: func(sd.Root) []string { return nil },
	}

	if len(o.scale) > 0 {
		return runScale([]tool{sysd, ours}, e, o.scale, o.runs, o.scaleOut, o.scaleSVG)
	}

	var b strings.Builder
	host, _ := os.Hostname()
	var uts syscall.Utsname
	syscall.Uname(&uts)
	rel := strings.TrimRight(string(int8sToBytes(uts.Release[:])), "\x00")
	fmt.Fprintf(&b, "# confext benchmark: ext-setup-root vs %s\n\n", e.Version)
	fmt.Fprintf(&b, "Measured %s on %s (kernel %s, %d CPUs), median of %d runs (the tools alternate run by run), roots on tmpfs, Flatcar layout "+
		"(`/var/lib/extensions.mutable/etc -> /etc`), `--mutable=yes`, images alternating directory and squashfs.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), host, rel, runtime.NumCPU(), o.runs)
	fmt.Fprintf(&b, "| measurement | ext-setup-root | systemd-confext 262 | ratio (ours/systemd) | target | result |\n|---|---|---|---|---|---|\n")

	var peakOurs, peakSD int64
	for _, n := range o.counts {
		r, cleanup, err := mixedRoot(e, n)
		if err != nil {
			return err
		}
		mc, rc := mergeBench([]tool{sysd, ours}, r, o.runs)
		sm, sr, om, or := mc[0], rc[0], mc[1], rc[1]
		po, perr := rssBench(ours, r)
		ps, serr := rssBench(sysd, r)
		cleanup()
		peakOurs, peakSD = max(peakOurs, po), max(peakSD, ps)
		target, res := "-", "-"
		if n >= 8 {
			target = "≤ 0.1"
			res = verdict(om.err == "" && sm.err == "" && float64(om.d) <= 0.1*float64(sm.d))
		}
		fmt.Fprintf(&b, "| merge, %d confext(s) | %s | %s | %s | %s | %s |\n", n, om, sm, ratio(om, sm), target, res)
		res = verdict(or.err == "" && sr.err == "" && float64(or.d) <= 0.05*float64(sr.d))
		fmt.Fprintf(&b, "| unchanged refresh, %d confext(s) | %s | %s | %s | ≤ 0.05 | %s |\n", n, or, sr, ratio(or, sr), res)
		if perr != nil || serr != nil {
			fmt.Fprintf(&b, "| peak RSS, merge+refresh of %d confext(s) | %v | %v | n/a | ≤ systemd | NOT met |\n", n, perr, serr)
		} else {
			fmt.Fprintf(&b, "| peak RSS, merge+refresh of %d confext(s) | %d KiB | %d KiB | %s | ≤ systemd | %s |\n", n, po, ps, ratioInt(po, ps), verdict(po > 0 && po <= ps))
		}
		fmt.Fprintf(os.Stderr, "bench-confext: %d confext(s): merge ours %s systemd %s; unchanged refresh ours %s systemd %s\n", n, om, sm, or, sr)
	}
	fmt.Fprintf(&b, "| peak RSS, all runs above | %d KiB | %d KiB | %s | ≤ systemd | %s |\n",
		peakOurs, peakSD, ratioInt(peakOurs, peakSD), verdict(peakOurs > 0 && peakOurs <= peakSD))
	fmt.Fprintf(&b, "| static binary size (%s) | %.2f MiB | - | - | ≤ 8 MiB | %s |\n", o.bin, float64(binSt.Size())/(1<<20), verdict(binSt.Size() <= 8<<20))

	// Window probe.
	r, cleanup, err := e.NewRoot("")
	if err != nil {
		return err
	}
	defer cleanup()
	f := sd.Fixture{Layout: sd.LayoutSymlink, Images: sd.StandardImages()}
	if err := f.Build(r.Host); err != nil {
		return err
	}
	paths := []string{filepath.Join(r.Host, "etc/upper.conf"), filepath.Join(r.Host, "etc/dir1.conf")}
	var wins []sd.WindowResult
	for _, w := range []struct {
		t tool
		n int
	}{{ours, o.windowOurs}, {sysd, o.winSD}} {
		if res, err := w.t.run(r, "--mutable=yes", "merge"); err != nil || res.ExitCode != 0 {
			fmt.Fprintf(&b, "| window probe %s | merge failed: %s | | | | |\n", w.t.name, short(res.Output))
			continue
		}
		wr := sd.Probe(w.t.name, paths, w.n, func(int) error {
			res, err := w.t.run(r, "--mutable=yes", "--always-refresh=yes", "refresh")
			if err == nil && res.ExitCode != 0 {
				err = fmt.Errorf("exit %d", res.ExitCode)
			}
			return err
		})
		fmt.Fprintln(os.Stderr, wr)
		wins = append(wins, wr)
		w.t.run(r, "unmerge")
		sd.UnmountBelow(filepath.Join(r.Host, "etc"))
	}
	if len(wins) == 2 {
		wo, ws := wins[0], wins[1]
		cellW := func(w sd.WindowResult) string {
			if w.CmdFailures == w.Replacements {
				return "all refreshes failed"
			}
			return fmt.Sprintf("%d/%d replacements with a gap (%.3f each), %d failed stats, median gap %s, max %s",
				w.AffectedReplacements, w.Replacements, float64(w.AffectedReplacements)/float64(w.Replacements),
				w.Failures(), fmtDur(w.MedianGap()), fmtDur(w.MaxGap()))
		}
		fmt.Fprintf(&b, "| /etc window during `refresh --always-refresh=yes` (stat of upper file + confext file in 2 tight loops) | %s | %s | - | zero gaps | %s |\n",
			cellW(wo), cellW(ws), verdict(wo.CmdFailures == 0 && wo.Failures() == 0))
		fmt.Fprintf(&b, "| forced refresh time (3 confexts, mean, probes spinning) | %s | %s | %s | - | - |\n",
			fmtDur(wo.Elapsed/time.Duration(max(wo.Replacements, 1))), fmtDur(ws.Elapsed/time.Duration(max(ws.Replacements, 1))),
			fmt.Sprintf("%.3f", (float64(wo.Elapsed)/float64(max(wo.Replacements, 1)))/(float64(ws.Elapsed)/float64(max(ws.Replacements, 1)))))
	}
	fmt.Fprintf(&b, "\nPeak RSS: GNU time %%M (ru_maxrss of the command and its waited-for children; floor about 1 MiB, "+
		"systemd's measured through chroot(8)). "+
		"Unchanged refresh: the overlay's unique mount id was checked to stay the same (a real skip).\n")

	fmt.Print(b.String())
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(o.out, []byte(b.String()), 0o644)
	}
	return nil
}

func ratioInt(a, b int64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", float64(a)/float64(b))
}

func int8sToBytes(s []int8) []byte {
	b := make([]byte, len(s))
	for i, c := range s {
		b[i] = byte(c)
	}
	return b
}

// mixedRoot is a fresh root in the systemd 262 chroot with Flatcar's
// layout and n images (directories and squashfs alternating); cleanup
// removes it.
func mixedRoot(e *sd.Env, n int) (sd.Root, func(), error) {
	r, cleanup, err := e.NewRoot("")
	if err != nil {
		return r, nil, err
	}
	f := sd.Fixture{Layout: sd.LayoutSymlink, Images: sd.MixedImages(n)}
	if err := f.Build(r.Host); err != nil {
		cleanup()
		return r, nil, err
	}
	return r, cleanup, nil
}
