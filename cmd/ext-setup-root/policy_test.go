package main

import (
	"strings"
	"testing"
)

func TestImagePolicyFlag(t *testing.T) {
	env, _, errb := testEnv()
	err := run(env, []string{"confext", "--root=" + t.TempDir(), "--image-policy=root=bogus", "status"})
	if exitCode(err) != 2 || !strings.Contains(err.Error()+errb.String(), "--image-policy") {
		t.Fatalf("invalid policy: %v %s", err, errb)
	}
}
