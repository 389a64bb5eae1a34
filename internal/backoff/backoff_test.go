package backoff

import (
	"context"
	"testing"
	"time"
)

// The delay stays within (0, min·2^attempt] capped at max, and grows: a
// loop that reconnects immediately, or never backs off, fails here.
func TestDelayBounds(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempt := range 10 {
		ceil := min(b.Min<<attempt, b.Max)
		var maxSeen time.Duration
		for range 500 {
			d := b.Delay(attempt)
			if d <= 0 || d > ceil+time.Millisecond {
				t.Fatalf("attempt %d: delay %v outside (0, %v]", attempt, d, ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < ceil/2 {
			t.Fatalf("attempt %d: largest of 500 delays %v, want jitter up to %v", attempt, maxSeen, ceil)
		}
	}
	if d := (Backoff{}).Delay(3); d <= 0 {
		t.Fatalf("zero config: delay %v, want > 0", d)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() { Sleep(ctx, time.Hour); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Sleep ignored a cancelled context")
	}
}
