package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with full jitter between Min and Max.
type Backoff struct {
	Min, Max time.Duration
}

// Delay returns the wait before retry number attempt (0-based): a random
// duration up to Min·2^attempt, capped at Max, and never zero.
func (b Backoff) Delay(attempt int) time.Duration {
	ceil := max(b.Min, time.Millisecond)
	for i := 0; i < attempt && ceil < b.Max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, max(b.Max, time.Millisecond))
	return time.Millisecond + rand.N(ceil)
}

// Sleep waits for d or until ctx ends, whichever comes first.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
