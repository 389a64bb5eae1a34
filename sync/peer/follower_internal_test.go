package peer

import (
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	const reconnectMax = 2 * time.Second
	for _, c := range []struct {
		err      error
		want     time.Duration
		operator bool
	}{
		{io.EOF, 300 * time.Millisecond, false},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), 300 * time.Millisecond, false},
		{fmt.Errorf("%w: wrong secret", ErrAuth), 20 * time.Second, true},
		{fmt.Errorf("%w: 1 vs 2", ErrVersion), 20 * time.Second, true},
		{fmt.Errorf("%w: epoch 3 < 5", ErrStaleOwner), 20 * time.Second, true},
	} {
		d, op := retryDelay(c.err, 300*time.Millisecond, reconnectMax)
		if d != c.want || op != c.operator {
			t.Errorf("retryDelay(%v) = %v, %v; want %v, %v", c.err, d, op, c.want, c.operator)
		}
	}
}
