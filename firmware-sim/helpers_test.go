package main

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/polltest"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitFor(t *testing.T, f func() error) {
	t.Helper()
	polltest.Until(t, 10*time.Second, f)
}
