package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
	"github.com/prometheus/client_golang/prometheus"
)

// defaultLimit is the page size when a request names none.
const defaultLimit = 100

// Config configures the API. Zero fields take the defaults of
// DefaultConfig; Log is required.
type Config struct {
	// Log is the node's log; required.
	Log *elog.Log
	// Meta, if set, adds each cursor's offset and lag to the partitions in
	// /v1/topics.
	Meta *meta.Store
	// Replication, if set, returns a partition's replica state (site
	// replication: replicas, in-sync set, high watermark, lag), shown in
	// /v1/topics under "replication"; nil (or a nil result) shows none.
	Replication func(topic string, partition int32) any
	// Gatherer serves /metrics; nil means no /metrics route.
	Gatherer prometheus.Gatherer
	// Registerer receives the API's own metrics (requests, waiting
	// long-polls); nil registers nothing.
	Registerer prometheus.Registerer
	// Token, if set, is required as "Authorization: Bearer <token>" on every
	// route but /healthz.
	Token string
	// Ready reports whether the node is ready to serve (nil error) for
	// /readyz; nil means only the log's health counts.
	Ready func() error
	// Logger receives server-side errors; nil discards.
	Logger *slog.Logger
	// MaxWait caps a records request's wait parameter.
	MaxWait time.Duration
	// MaxLimit caps a records request's limit parameter.
	MaxLimit int
	// MaxBytes caps, and is the default of, a records request's max_bytes
	// (encoded record bytes; the JSON answer is up to about 2.7 times that).
	MaxBytes int
	// MaxWaiters caps how many long-polls may wait at once; more get 429.
	// It bounds the memory idle readers can hold.
	MaxWaiters int
	// Routes adds read-only routes served by other components (pattern,
	// e.g. "GET /v1/commands" → handler), behind the same token.
	Routes map[string]http.Handler
	// OpenPaths are exact paths served without the token besides /healthz:
	// pages that carry no data and must load to ask for it (the dashboard).
	OpenPaths []string
}

// DefaultConfig returns the defaults as a fresh value (Log still to set).
func DefaultConfig() Config {
	return Config{
		MaxWait:    30 * time.Second,
		MaxLimit:   1000,
		MaxBytes:   1 << 20,
		MaxWaiters: 256,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxWait == 0 {
		c.MaxWait = d.MaxWait
	}
	if c.MaxLimit == 0 {
		c.MaxLimit = d.MaxLimit
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.MaxWaiters == 0 {
		c.MaxWaiters = d.MaxWaiters
	}
}

// Validate checks the config after defaults are filled in. Errors name the
// field.
func (c Config) Validate() error {
	c.fill()
	switch {
	case c.Log == nil:
		return fmt.Errorf("api: Log: required")
	case c.MaxWait < 0 || c.MaxWait > 10*time.Minute:
		return fmt.Errorf("api: MaxWait: %v is not between 0 and 10m", c.MaxWait)
	case c.MaxLimit < 1 || c.MaxLimit > 100000:
		return fmt.Errorf("api: MaxLimit: %d is not between 1 and 100000", c.MaxLimit)
	case c.MaxBytes < 1<<10 || c.MaxBytes > 64<<20:
		return fmt.Errorf("api: MaxBytes: %d is not between 1 KiB and 64 MiB", c.MaxBytes)
	case c.MaxWaiters < 1:
		return fmt.Errorf("api: MaxWaiters: %d is below 1", c.MaxWaiters)
	}
	return nil
}
