package groups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
)

// StartKind says where a group with no committed position starts.
type StartKind int

const (
	// StartEarliest reads everything the stream holds.
	StartEarliest StartKind = iota
	// StartLatest reads what arrives after the bucket was taken.
	StartLatest
	// StartTime reads from the first message stored at or after Start.Time.
	StartTime
)

// Start is where a bucket without a committed position is read from.
type Start struct {
	Kind StartKind
	Time time.Time // StartTime
}

// ParseStart reads "earliest", "latest" or an RFC 3339 time.
func ParseStart(s string) (Start, error) {
	switch s {
	case "earliest", "":
		return Start{Kind: StartEarliest}, nil
	case "latest":
		return Start{Kind: StartLatest}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Start{}, fmt.Errorf("groups: start %q is not earliest, latest or an RFC 3339 time (2026-12-04T08:00:00Z)", s)
	}
	return Start{Kind: StartTime, Time: t}, nil
}

// Record is one record as a group member receives it.
type Record struct {
	// Origin names the edge partition it comes from (site, node, topic,
	// partition).
	Origin wire.Origin
	wire.Record
	// Bucket is the bucket it was read from; Seq the stream sequence of
	// its message (several records share one in batch format).
	Bucket int
	Seq    uint64
}

// Handler handles one record. Records of one bucket come one at a time in
// stream order; records of different buckets concurrently. An error stops
// the member (Run returns it); the record is not committed and is
// delivered again to whoever reads the bucket next.
type Handler func(ctx context.Context, r Record) error

// Config configures a Member.
type Config struct {
	// Group names the group: 1–64 of [A-Za-z0-9_-].
	Group string
	// Topic is the log topic the group reads (one per group).
	Topic string
	// Prefix is the subject prefix (wire.DefaultPrefix).
	Prefix string
	// Member names this member within the group; "" makes a unique one.
	Member string
	// Start applies to buckets without a committed position.
	Start Start
	// SessionTimeout is how long a member may go without a heartbeat
	// before its buckets are taken by others (default 5 s). It is the group
	// bucket's: the first member creates it, later members use it.
	SessionTimeout time.Duration
	// CommitInterval is how often handled positions are committed
	// (default 1 s); negative commits only on Commit, release and leave.
	CommitInterval time.Duration
	// Handler is called for every record.
	Handler Handler
	// Assigned and Revoked, if set, are called when this member starts and
	// stops reading a bucket (after its position was committed).
	Assigned func(bucket int)
	Revoked  func(bucket int)
	// Logger receives membership and assignment changes; nil discards.
	Logger *slog.Logger
}

func (c *Config) fill() {
	if c.Prefix == "" {
		c.Prefix = wire.DefaultPrefix
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 5 * time.Second
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks c after defaults.
func (c *Config) Validate() error {
	if err := ValidateName(c.Group); err != nil {
		return err
	}
	if err := wire.ValidateTopic(c.Topic); err != nil {
		return fmt.Errorf("groups: topic: %w", err)
	}
	if c.Member != "" {
		if err := wire.ValidateName("member", c.Member); err != nil {
			return fmt.Errorf("groups: %w", err)
		}
	}
	if c.Handler == nil {
		return errors.New("groups: Handler is nil")
	}
	if c.SessionTimeout < time.Second {
		return fmt.Errorf("groups: session timeout %v is below 1s", c.SessionTimeout)
	}
	return nil
}

// ValidateName checks a group name.
func ValidateName(name string) error {
	if err := wire.ValidateName("group", name); err != nil {
		return fmt.Errorf("groups: %w", err)
	}
	return nil
}
