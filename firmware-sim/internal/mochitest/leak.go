package mochitest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// VerifyNoLeaks runs the package's tests and then fails the run if
// goroutines started by firmware-sim code are still alive: a stand-in for
// goleak.VerifyTestMain, which is not in go.mod. Use from TestMain:
//
//	func TestMain(m *testing.M) { mochitest.VerifyNoLeaks(m) }
func VerifyNoLeaks(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitLeaks(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked by firmware-sim code:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitLeaks polls until no goroutine runs firmware-sim code, because
// goroutines end shortly after the Close that stops them.
func waitLeaks(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "outpost/firmware-sim/") && !strings.Contains(g, "VerifyNoLeaks") && !strings.Contains(g, "waitLeaks") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
