package peer

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with full jitter: two nodes that lost
// each other at the same moment do not retry in step.
type backoff struct {
	min, max time.Duration
}

// delay returns the wait before retry number attempt (0-based): a random
// duration up to min·2^attempt, capped at max, and never zero.
func (b backoff) delay(attempt int) time.Duration {
	ceil := b.min
	for i := 0; i < attempt && ceil < b.max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.max)
	return time.Millisecond + rand.N(ceil)
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
