package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCheckAndRepair runs the operator's path for a damaged disk on the
// built binary: `edge check` finds damage in the middle of a segment (what
// a bad SD card sector leaves: valid data after it, so the node refuses to
// guess), `edge repair` needs -yes, cuts the partition there and keeps
// evidence, and afterwards check passes and the node serves every record
// before the damage, in order.
func TestCheckAndRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	bin := edgeBinary(t)
	pub := mosquittoTool(t, "mosquitto_pub")
	data := t.TempDir()
	p := startEdge(t, bin, data)
	const n = 400
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, "m-%04d\n", i)
	}
	cmd := exec.Command(pub, "-h", "127.0.0.1", "-p", strings.Split(p.mqtt, ":")[1], "-i", "dev-repair", "-q", "1", "-t", "sensors/repair", "-l")
	cmd.Stdin = strings.NewReader(lines.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, func() error {
		if got := len(allValues(t, p.http)); got != n {
			return fmt.Errorf("%d records, want %d", got, n)
		}
		return nil
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	p.exitOnce.Do(func() {})

	run := func(args ...string) (int, string) {
		t.Helper()
		c := exec.Command(bin, args...)
		out, err := c.CombinedOutput()
		if err != nil && c.ProcessState == nil {
			t.Fatalf("edge %v: %v", args, err)
		}
		return c.ProcessState.ExitCode(), string(out)
	}
	if code, out := run("check", "-data", data); code != 0 || !strings.Contains(out, "log ok: 8 partitions, 400 records") {
		t.Fatalf("check of a sound log: exit %d\n%s", code, out)
	}

	segs, err := filepath.Glob(filepath.Join(data, "log", "*", "*", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	var seg string
	var size int64
	for _, s := range segs {
		if st, err := os.Stat(s); err == nil && st.Size() > size {
			seg, size = s, st.Size()
		}
	}
	f, err := os.OpenFile(seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xDE, 0xAD, 0xBE, 0xEF}, size/2); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if code, out := run("check", "-data", data); code != 1 || !strings.Contains(out, "DAMAGED  "+seg) || !strings.Contains(out, "edge repair") {
		t.Fatalf("check of a damaged log: exit %d, want 1 naming %s and the repair command\n%s", code, seg, out)
	}
	if code, out := run("repair", "-data", data); code != 2 || !strings.Contains(out, "-yes") {
		t.Fatalf("repair without -yes: exit %d, want 2 and advice\n%s", code, out)
	}
	code, out := run("repair", "-data", data, "-yes")
	if code != 0 || !strings.Contains(out, "evidence ") || !strings.Contains(out, "log repaired") {
		t.Fatalf("repair: exit %d\n%s", code, out)
	}
	t.Logf("repair said:\n%s", out)
	if code, out := run("check", "-data", data); code != 0 || !strings.Contains(out, "log ok") {
		t.Fatalf("check after repair: exit %d\n%s", code, out)
	}

	q := startEdge(t, bin, data)
	values := allValues(t, q.http)
	if len(values) == 0 || len(values) >= n {
		t.Fatalf("%d records after repair, want some but fewer than %d", len(values), n)
	}
	for i, v := range values {
		if want := fmt.Sprintf("m-%04d", i); v != want {
			t.Fatalf("record %d is %q, want %q: repair must keep exactly the prefix before the damage", i, v, want)
		}
	}
}
