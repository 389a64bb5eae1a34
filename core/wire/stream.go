package wire

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TopicConfig is the stream shape of one topic. Zero fields take the value
// of Config.Defaults, then of DefaultTopicConfig.
type TopicConfig struct {
	// DuplicateWindow is how long JetStream remembers Nats-Msg-Ids to drop
	// resends. Longer costs memory per message in the window; exactly-once
	// after longer outages comes from wire.LastOffset, not from this.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// MaxAge drops messages older than this; 0 keeps them forever.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes caps the stream size; 0 means no cap.
	MaxBytes int64 `yaml:"max_bytes"`
	// Replicas is the JetStream replication factor (1..5); a single-node
	// server supports only 1.
	Replicas int `yaml:"replicas"`
	// Discard is what happens at MaxBytes/MaxAge: "old" drops the oldest
	// messages, "new" refuses new ones (forwarders then pause and keep the
	// data at the edge until an operator makes room).
	Discard string `yaml:"discard"`
}

// DefaultTopicConfig returns the built-in stream shape: 2 minute duplicate
// window, no age or size limit, 1 replica, discard old.
func DefaultTopicConfig() TopicConfig {
	return TopicConfig{DuplicateWindow: 2 * time.Minute, Replicas: 1, Discard: "old"}
}

// WithDefaults returns tc with its zero fields taken from d.
func (tc TopicConfig) WithDefaults(d TopicConfig) TopicConfig {
	if tc.DuplicateWindow == 0 {
		tc.DuplicateWindow = d.DuplicateWindow
	}
	if tc.MaxAge == 0 {
		tc.MaxAge = d.MaxAge
	}
	if tc.MaxBytes == 0 {
		tc.MaxBytes = d.MaxBytes
	}
	if tc.Replicas == 0 {
		tc.Replicas = d.Replicas
	}
	if tc.Discard == "" {
		tc.Discard = d.Discard
	}
	return tc
}

// Validate checks tc after defaults are applied; field names the YAML path
// used in errors.
func (tc TopicConfig) Validate(field string) error {
	if tc.DuplicateWindow < 0 {
		return fmt.Errorf("%s.duplicate_window: %v is negative", field, tc.DuplicateWindow)
	}
	if tc.MaxAge < 0 {
		return fmt.Errorf("%s.max_age: %v is negative; use 0 for no limit", field, tc.MaxAge)
	}
	if tc.MaxAge > 0 && tc.DuplicateWindow > tc.MaxAge {
		return fmt.Errorf("%s.duplicate_window: %v is longer than max_age %v", field, tc.DuplicateWindow, tc.MaxAge)
	}
	if tc.MaxBytes < 0 {
		return fmt.Errorf("%s.max_bytes: %d is negative; use 0 for no limit", field, tc.MaxBytes)
	}
	if tc.Replicas < 0 || tc.Replicas > 5 {
		return fmt.Errorf("%s.replicas: %d is outside 1..5", field, tc.Replicas)
	}
	switch tc.Discard {
	case "", "old", "new":
	default:
		return fmt.Errorf("%s.discard: %q is neither \"old\" nor \"new\"", field, tc.Discard)
	}
	return nil
}

// StreamConfig returns the stream of topic with tc (zero fields of tc take
// DefaultTopicConfig values): what core provisions, and what a forwarder
// allowed to create streams creates.
func StreamConfig(prefix, topic string, tc TopicConfig) (jetstream.StreamConfig, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return jetstream.StreamConfig{}, fmt.Errorf("wire: %w", err)
	}
	if err := ValidateTopic(topic); err != nil {
		return jetstream.StreamConfig{}, fmt.Errorf("wire: %w", err)
	}
	tc = tc.WithDefaults(DefaultTopicConfig())
	if err := tc.Validate("topic " + topic); err != nil {
		return jetstream.StreamConfig{}, fmt.Errorf("wire: %w", err)
	}
	maxBytes := tc.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	discard := jetstream.DiscardOld
	if tc.Discard == "new" {
		discard = jetstream.DiscardNew
	}
	return jetstream.StreamConfig{
		Name:        StreamName(prefix, topic),
		Description: "Outpost log topic " + topic,
		Subjects:    []string{StreamSubjects(prefix, topic)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     discard,
		MaxAge:      tc.MaxAge,
		MaxBytes:    maxBytes,
		MaxMsgs:     -1,
		Replicas:    tc.Replicas,
		Duplicates:  tc.DuplicateWindow,
		// Off on purpose: see package doc and LastOffset.
		AllowDirect: false,
		// A peer forwarding a dead node's replica publishes in atomic
		// batches conditional on the subject's last sequence (sync/upstream
		// Config.Fenced), so that a forwarder whose lease lapsed cannot
		// duplicate or reorder; without it, it sends one message per round
		// trip.
		AllowAtomicPublish: true,
		Metadata: map[string]string{
			MetadataTopic:  topic,
			MetadataPrefix: prefix,
		},
	}, nil
}

// Stream metadata keys core sets, so tools can map a stream back to its
// topic without parsing its name.
const (
	MetadataTopic  = "outpost.topic"
	MetadataPrefix = "outpost.prefix"
	// MetadataStatusPrefix marks the status stream of a prefix (it holds
	// status reports, not records, so it does not carry MetadataPrefix).
	MetadataStatusPrefix = "outpost.status-prefix"
)
