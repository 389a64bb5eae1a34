package e2e_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The container health check and -version work on the built binary.
func TestHealthcheckAndVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	bin := edgeBinary(t)
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "edge ") {
		t.Fatalf("-version: %v: %s", err, out)
	}
	p := startEdge(t, bin, t.TempDir())
	if out, err := exec.Command(bin, "healthcheck", "-http", p.http).CombinedOutput(); err != nil {
		t.Fatalf("healthcheck of a ready node: %v: %s", err, out)
	}
	p.kill()
	if err := exec.Command(bin, "healthcheck", "-http", p.http).Run(); err == nil {
		t.Fatal("healthcheck of a dead node succeeded")
	}
}
