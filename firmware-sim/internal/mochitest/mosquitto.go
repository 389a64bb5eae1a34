package mochitest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// MosquittoPath is where Debian installs the mosquitto broker.
const MosquittoPath = "/usr/sbin/mosquitto"

// StartMosquitto runs Debian's mosquitto on a loopback port with a
// generated config (anonymous, no persistence, no in-flight or queue limit
// that would throttle a pipelining client) until the test ends, and returns
// its URL. It skips the test, visibly, when mosquitto is not installed.
func StartMosquitto(tb testing.TB) string {
	tb.Helper()
	if _, err := os.Stat(MosquittoPath); err != nil {
		tb.Skipf("mosquitto not installed at %s (apt-get install mosquitto)", MosquittoPath)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := tb.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 0\nset_tcp_nodelay true\nlog_dest none\n", port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(MosquittoPath, "-c", conf)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return "tcp://" + addr
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mosquitto on %s not up: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
