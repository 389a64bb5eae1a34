package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// StatusVersion is the Status.Version this package writes. Readers accept
// any version >= 1 and ignore fields they do not know.
const StatusVersion = 1

// MaxStatusPartitions bounds one Status report; core refuses larger ones.
const MaxStatusPartitions = 10000

// Status is what an edge node publishes on StatusSubject while it is
// connected (every few seconds and after a change): how far forwarding is
// behind, per partition, as the edge sees it. It travels as JSON over core
// NATS (fire and forget: the next report replaces a lost one).
type Status struct {
	// Version is StatusVersion.
	Version int `json:"v"`
	// Site and Node must match the subject the report arrived on.
	Site string `json:"site"`
	Node string `json:"node"`
	// Time is the edge's clock when it sent the report.
	Time time.Time `json:"time"`
	// Software is free text (version of the edge binary), may be empty.
	Software string `json:"software,omitempty"`
	// ForwardedBy is the node that forwards Node's partitions and sent
	// this report: Node itself, or a site peer that took over forwarding
	// of Node's replicated partitions while Node is away (issue 14). Empty
	// in reports of edges older than it: Node itself.
	ForwardedBy string `json:"forwarded_by,omitempty"`
	// Partitions lists every partition the node forwards.
	Partitions []PartitionStatus `json:"partitions"`
}

// PartitionStatus is one partition's forwarding state.
type PartitionStatus struct {
	// Topic and Partition name the origin partition.
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// EndOffset is the next offset the edge log will assign.
	EndOffset int64 `json:"end_offset"`
	// ForwardedOffset is the next offset to forward: every record below it
	// is acknowledged by the stream.
	ForwardedOffset int64 `json:"forwarded_offset"`
	// LagRecords is EndOffset - ForwardedOffset (minus records retention
	// dropped unforwarded, if the disk-budget policy did so).
	LagRecords int64 `json:"lag_records"`
	// LagBytes is the log bytes from ForwardedOffset to EndOffset.
	LagBytes int64 `json:"lag_bytes"`
	// OldestUnforwardedAgeMs is how long the record at ForwardedOffset has
	// waited, in milliseconds; 0 when nothing is waiting.
	OldestUnforwardedAgeMs int64 `json:"oldest_unforwarded_age_ms"`
	// Error is why forwarding of this partition is paused (stream missing,
	// permission denied, ...), "" while it runs.
	Error string `json:"error,omitempty"`
}

// Validate checks a decoded report.
func (s *Status) Validate() error {
	if s.Version < 1 {
		return fmt.Errorf("wire: status: version %d, want >= 1", s.Version)
	}
	if err := ValidateName("site", s.Site); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if s.ForwardedBy != "" {
		if err := ValidateName("forwarded_by", s.ForwardedBy); err != nil {
			return fmt.Errorf("status: %w", err)
		}
	}
	if err := ValidateName("node", s.Node); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if len(s.Partitions) > MaxStatusPartitions {
		return fmt.Errorf("wire: status: %d partitions, at most %d", len(s.Partitions), MaxStatusPartitions)
	}
	seen := make(map[partKey]struct{}, len(s.Partitions))
	for i, p := range s.Partitions {
		if _, dup := seen[partKey{p.Topic, p.Partition}]; dup {
			return fmt.Errorf("wire: status: partitions[%d]: %s/%d is listed twice", i, p.Topic, p.Partition)
		}
		seen[partKey{p.Topic, p.Partition}] = struct{}{}
		if err := ValidateTopic(p.Topic); err != nil {
			return fmt.Errorf("status: partitions[%d]: %w", i, err)
		}
		if p.Partition < 0 || p.EndOffset < 0 || p.ForwardedOffset < 0 || p.LagRecords < 0 || p.LagBytes < 0 || p.OldestUnforwardedAgeMs < 0 {
			return fmt.Errorf("wire: status: partitions[%d] (%s/%d): negative number", i, p.Topic, p.Partition)
		}
	}
	return nil
}

type partKey struct {
	topic string
	part  int32
}

// EncodeStatus validates s and returns its JSON.
func EncodeStatus(s Status) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// DecodeStatus parses and validates a report.
func DecodeStatus(b []byte) (Status, error) {
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("wire: status: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Status{}, err
	}
	return s, nil
}

// PublishStatus sends s on its StatusSubject. Core NATS, no ack: a lost
// report is replaced by the next one.
func PublishStatus(nc *nats.Conn, prefix string, s Status) error {
	if s.Version == 0 {
		s.Version = StatusVersion
	}
	b, err := EncodeStatus(s)
	if err != nil {
		return err
	}
	if err := nc.Publish(StatusSubject(prefix, s.Site, s.Node), b); err != nil {
		return fmt.Errorf("wire: publish status: %w", err)
	}
	return nil
}

// ProvisionRequest asks core to make sure the stream for Topic exists.
type ProvisionRequest struct {
	// Version is StatusVersion.
	Version int `json:"v"`
	// Topic is the log topic.
	Topic string `json:"topic"`
}

// ProvisionReply is core's answer: the stream on success, Error otherwise.
type ProvisionReply struct {
	// Stream is the stream that now holds Topic.
	Stream string `json:"stream,omitempty"`
	// Subjects is the stream's subject filter (StreamSubjects).
	Subjects string `json:"subjects,omitempty"`
	// Created is true when this request created the stream.
	Created bool `json:"created,omitempty"`
	// Error says why core did not provide the stream.
	Error string `json:"error,omitempty"`
}

// ErrProvisionRefused is wrapped when core answered with an error (for
// example: auto-provisioning is off and the topic is not configured).
var ErrProvisionRefused = errors.New("wire: core refused to provision the stream")

// RequestProvision asks core, on ProvisionSubject, to ensure the stream for
// topic exists, and waits for the reply (bound it with ctx).
func RequestProvision(ctx context.Context, nc *nats.Conn, prefix, site, node, topic string) (ProvisionReply, error) {
	if err := ValidateTopic(topic); err != nil {
		return ProvisionReply{}, err
	}
	req, err := json.Marshal(ProvisionRequest{Version: StatusVersion, Topic: topic})
	if err != nil {
		return ProvisionReply{}, fmt.Errorf("wire: provision request: %w", err)
	}
	subj := ProvisionSubject(prefix, site, node)
	m, err := nc.RequestWithContext(ctx, subj, req)
	if errors.Is(err, nats.ErrNoResponders) {
		return ProvisionReply{}, fmt.Errorf("wire: nobody answers %s: start core, or create stream %s yourself: %w",
			subj, StreamName(prefix, topic), err)
	}
	if err != nil {
		return ProvisionReply{}, fmt.Errorf("wire: provision %s: %w", topic, err)
	}
	var rep ProvisionReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return ProvisionReply{}, fmt.Errorf("wire: provision %s: bad reply: %w", topic, err)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("%w: %s: %s", ErrProvisionRefused, topic, rep.Error)
	}
	return rep, nil
}

// DefaultStatusInterval is how often an edge should publish its Status
// while connected (and also right after a partition's error changes).
// core's view of a node is as fresh as this.
const DefaultStatusInterval = 5 * time.Second
