package qemu

import (
	"strings"
	"testing"
)

// TestReporterQuietsConsole: the reporter lowers the console log level
// before its first result line (a kernel message interleaved with a result
// line made the host miss stage pre's summary in a model (b) soak replay).
func TestReporterQuietsConsole(t *testing.T) {
	q := strings.Index(reporterScript, "echo 3 >/proc/sys/kernel/printk")
	first := strings.Index(reporterScript, "\nr start ")
	if q < 0 || first < 0 || q > first {
		t.Fatalf("reporter must set the console log level before its first result (quiet at %d, first result at %d)", q, first)
	}
}
