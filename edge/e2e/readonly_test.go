package e2e_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadOnlyRoot runs the built edge binary in a private mount namespace
// whose root filesystem is read-only, with only the data directory
// writable (how the systemd unit and the container run it), and checks it
// starts, ingests and serves. Needs root for the mount namespace.
func TestReadOnlyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a mount namespace (CI runs as root)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) missing: %v", err)
	}
	bin := edgeBinary(t)
	data := t.TempDir()
	mqtt, httpAddr := freePort(t), freePort(t)
	script := fmt.Sprintf(`set -e
mount --bind %[1]q %[1]q
mount -o remount,ro,bind /
if touch /outpost-readonly-probe 2>/dev/null; then echo "root is writable: test invalid" >&2; exit 3; fi
exec %[2]q -data %[1]q -mqtt %[3]s -http %[4]s`, data, bin, mqtt, httpAddr)
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	var stderr strings.Builder
	cmd.Stderr = &lockedWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	waitFor(t, 20*time.Second, func() error {
		select {
		case err := <-exited:
			t.Fatalf("edge exited under a read-only root: %v: %s", err, stderr.String())
		default:
		}
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	host, port, _ := strings.Cut(mqtt, ":")
	out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-i", "ro-dev", "-t", "ro/test", "-m", "written under a read-only root").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s (edge: %s)", err, out, stderr.String())
	}
	if vals := allValues(t, httpAddr); !slices.Contains(vals, "written under a read-only root") {
		t.Fatalf("record not readable back: %v", vals)
	}
}
