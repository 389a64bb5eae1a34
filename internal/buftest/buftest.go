// Package buftest has a bytes buffer that goroutines may write while a test
// reads it: what loggers, child processes and consumers write to in the
// tree's tests.
package buftest

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent Write and String. The zero
// value is ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns a copy of what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Count reports how often sub occurs in what was written so far.
func (b *Buffer) Count(sub string) int { return strings.Count(b.String(), sub) }
