package downlink

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/wire"
)

// HolderName names the Store's retention hold on the command log and its
// cursor in the metadata store.
const HolderName = "downlink"

// doneBucket keeps, per command above the cursor that is final at the
// edge, its final status (metadata store bucket).
const doneBucket = "downlink.done"

// Config configures the edge half of the downlink.
type Config struct {
	// Prefix is the subject prefix (wire.DefaultPrefix).
	Prefix string
	// Site and Node name this node; commands for Site are taken.
	Site string
	Node string
	// MaxPerDevice bounds the commands queued at this node for one device;
	// a command beyond it is rejected (queue_full). MaxQueued bounds them
	// node-wide.
	MaxPerDevice int
	MaxQueued    int
	// FetchBatch is how many commands one pull asks the centre for.
	FetchBatch int
	// Retry is the first wait after a failed pull (doubles up to 30 s).
	Retry time.Duration
	// Logger receives the component's logs; nil discards.
	Logger *slog.Logger
	// Registerer receives outpost_downlink_* metrics; nil registers none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Prefix: wire.DefaultPrefix, MaxPerDevice: 100, MaxQueued: 10000, FetchBatch: 32, Retry: 500 * time.Millisecond}
}

// Validate checks c; errors name the edge config field (downlink.*).
func (c Config) Validate() error {
	if err := wire.ValidatePrefix(c.Prefix); err != nil {
		return fmt.Errorf("downlink: prefix: %w", err)
	}
	if err := wire.ValidateName("site", c.Site); err != nil {
		return fmt.Errorf("downlink: site: %w", err)
	}
	if err := wire.ValidateName("node", c.Node); err != nil {
		return fmt.Errorf("downlink: node: %w", err)
	}
	switch {
	case c.MaxPerDevice < 1:
		return fmt.Errorf("downlink.max_per_device: %d is below 1", c.MaxPerDevice)
	case c.MaxQueued < c.MaxPerDevice:
		return fmt.Errorf("downlink.max_queued: %d is below max_per_device %d", c.MaxQueued, c.MaxPerDevice)
	case c.FetchBatch < 1 || c.FetchBatch > 1024:
		return errors.New("downlink: FetchBatch: want 1..1024")
	case c.Retry <= 0:
		return errors.New("downlink: Retry: want > 0")
	}
	return nil
}
