package meta

import (
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Store. Zero fields take the defaults of
// DefaultConfig. There is deliberately no field that disables fsync.
type Config struct {
	// Logger receives clamp reports and open diagnostics; nil discards.
	Logger *slog.Logger
	// Timeout is how long Open waits for the file lock before failing with
	// ErrLocked. It lets a restarting node wait out its predecessor.
	Timeout time.Duration
	// BatchMaxDelay is how long SetCursor waits for other commits to share
	// its transaction (bbolt's MaxBatchDelay). Callers that arrive during a
	// commit's fsync share the next one anyway, so the wait only needs to
	// gather a burst. With bbolt's own 10ms default a lone caller's commit
	// took about 14ms instead of 2–4ms, and 32 concurrent callers managed
	// about 2,000 commits/s instead of 5,800 at 1ms (BenchmarkSetCursor,
	// medians on 2 shared cores).
	BatchMaxDelay time.Duration
	// BatchMaxSize commits a batch early once it holds this many SetCursor
	// calls (bbolt's MaxBatchSize).
	BatchMaxSize int
}

// DefaultConfig returns the defaults as a fresh value.
func DefaultConfig() Config {
	return Config{
		Timeout:       2 * time.Second,
		BatchMaxDelay: time.Millisecond,
		BatchMaxSize:  1000,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.BatchMaxDelay == 0 {
		c.BatchMaxDelay = d.BatchMaxDelay
	}
	if c.BatchMaxSize == 0 {
		c.BatchMaxSize = d.BatchMaxSize
	}
}

// Validate checks bounds after defaults are filled in. Errors name the field.
func (c Config) Validate() error {
	c.fill()
	switch {
	case c.Timeout < 0:
		return fmt.Errorf("meta: Timeout: %v is negative", c.Timeout)
	case c.BatchMaxDelay < 0 || c.BatchMaxDelay > time.Second:
		return fmt.Errorf("meta: BatchMaxDelay: %v is not between 0 and 1s", c.BatchMaxDelay)
	case c.BatchMaxSize < 1:
		return fmt.Errorf("meta: BatchMaxSize: %d is below 1", c.BatchMaxSize)
	}
	return nil
}
