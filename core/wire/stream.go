package wire

import (
	"fmt"
	"strconv"
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
	// Buckets divides the stream for consumer groups (issue 13): a subject
	// transform stores every record of one origin partition (site, node,
	// partition) under <prefix>.<topic>.<bucket>.<site>.<node>.<partition>,
	// bucket = JetStream's partition() hash of the three, so order per
	// origin partition holds within a bucket. Fixed when the stream is
	// created: core never changes an existing stream's buckets (it would
	// move origin partitions between buckets), nor adds them to a stream
	// made without.
	Buckets int `yaml:"buckets"`
}

// MaxBuckets bounds TopicConfig.Buckets.
const MaxBuckets = 1024

// DefaultTopicConfig returns the built-in stream shape: 2 minute duplicate
// window, no age or size limit, 1 replica, discard old.
func DefaultTopicConfig() TopicConfig {
	return TopicConfig{DuplicateWindow: 2 * time.Minute, Replicas: 1, Discard: "old", Buckets: 16}
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
	if tc.Buckets == 0 {
		tc.Buckets = d.Buckets
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
	if tc.Buckets < 0 || tc.Buckets > MaxBuckets {
		return fmt.Errorf("%s.buckets: %d is outside 1..%d", field, tc.Buckets, MaxBuckets)
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
		SubjectTransform:   bucketTransform(prefix, topic, tc.Buckets),
		Metadata: map[string]string{
			MetadataTopic:   topic,
			MetadataPrefix:  prefix,
			MetadataBuckets: strconv.Itoa(tc.Buckets),
		},
	}, nil
}

// bucketTransform inserts the bucket token (TopicConfig.Buckets).
func bucketTransform(prefix, topic string, n int) *jetstream.SubjectTransformConfig {
	base := prefix + "." + TopicToken(topic) + "."
	return &jetstream.SubjectTransformConfig{
		Source:      base + "*.*.*",
		Destination: base + "{{partition(" + strconv.Itoa(n) + ",1,2,3)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}",
	}
}

// StreamBuckets returns the number of buckets of a topic stream, 0 for a
// stream made without (before buckets existed, or by hand): its records
// are stored under Subject, and a consumer group reads it as one bucket.
// A stream counts as bucketed only if its metadata and its transform
// agree, so a hand-edited stream is not misread.
func StreamBuckets(cfg jetstream.StreamConfig) int {
	n, err := strconv.Atoi(cfg.Metadata[MetadataBuckets])
	if err != nil || n < 1 || n > MaxBuckets || cfg.SubjectTransform == nil {
		return 0
	}
	topic, prefix := cfg.Metadata[MetadataTopic], cfg.Metadata[MetadataPrefix]
	if want := bucketTransform(prefix, topic, n); *cfg.SubjectTransform != *want {
		return 0
	}
	return n
}

// LookupSubject is the subject whose last message is origin o's last
// record in a stream with or without buckets: Subject, or with a
// wildcard where the bucket token is. A forwarder resumes after it and
// names it in Nats-Expected-Last-Subject-Sequence-Subject.
func LookupSubject(prefix string, o Origin, bucketed bool) (string, error) {
	if !bucketed {
		return Subject(prefix, o)
	}
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	if err := o.Validate(); err != nil {
		return "", err
	}
	return prefix + "." + TopicToken(o.Topic) + ".*." + o.Site + "." + o.Node + "." +
		strconv.FormatInt(int64(o.Partition), 10), nil
}

// BucketFilter is the subject filter of one bucket of a bucketed topic
// stream; bucket -1 is the filter of the whole stream (a stream without
// buckets is one).
func BucketFilter(prefix, topic string, bucket int) string {
	if bucket < 0 {
		return StreamSubjects(prefix, topic)
	}
	return prefix + "." + TopicToken(topic) + "." + strconv.Itoa(bucket) + ".*.*.*"
}

// Stream metadata keys core sets, so tools can map a stream back to its
// topic without parsing its name.
const (
	MetadataTopic  = "outpost.topic"
	MetadataPrefix = "outpost.prefix"
	// MetadataBuckets is the stream's TopicConfig.Buckets (StreamBuckets).
	MetadataBuckets = "outpost.buckets"
	// MetadataStatusPrefix marks the status stream of a prefix (it holds
	// status reports, not records, so it does not carry MetadataPrefix).
	MetadataStatusPrefix = "outpost.status-prefix"
)
