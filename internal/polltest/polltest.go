// Package polltest waits in tests for a condition to hold, polling, instead
// of sleeping for a guessed time. It is the one place the tree's tests
// share for that; a condition that never holds fails the test with its last
// error, after the timeout.
package polltest

import (
	"testing"
	"time"
)

// Interval is how often Until checks the condition.
const Interval = 5 * time.Millisecond

// Until calls f every Interval until it returns nil, and fails tb with f's
// last error once timeout has passed.
func Until(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(Interval)
	}
}
