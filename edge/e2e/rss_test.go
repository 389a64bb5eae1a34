package e2e_test

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestRSSIdleAndIdleConnections measures the built node's resident memory
// idle and with 1,000 idle MQTT connections, against the targets of 20 MB
// and 60 MB.
func TestRSSIdleAndIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	bin := edgeBinary(t)
	p := startEdge(t, bin, t.TempDir())
	pid := p.cmd.Process.Pid
	time.Sleep(500 * time.Millisecond) // let start-up garbage be collected: a measurement, not synchronisation
	idle := rssKiB(t, pid)
	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; len(conns) < n; i++ {
		if i > 3*n {
			t.Fatalf("only %d of %d connections accepted", len(conns), n)
		}
		pub, err := dialPublisher(p.mqtt, fmt.Sprintf("idle-%05d", i), 1)
		if err != nil {
			time.Sleep(20 * time.Millisecond) // the connect rate limit (200/s) refused it; retry
			continue
		}
		conns = append(conns, pub.conn)
	}
	time.Sleep(time.Second)
	busy := rssKiB(t, pid)
	t.Logf("RSS idle %.1f MB, with %d idle connections %.1f MB (%.1f KiB per connection)",
		float64(idle)/1024, n, float64(busy)/1024, float64(busy-idle)/n)
	if idle > 20*1024 {
		t.Errorf("idle RSS %d KiB exceeds the 20 MB target", idle)
	}
	if busy > 60*1024 {
		t.Errorf("RSS with %d connections %d KiB exceeds the 60 MB target", n, busy)
	}
}
