package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// StatusStream is the shape of the stream that keeps the last status
// report of every edge node (wire.StatusStreamName).
type StatusStream struct {
	// MaxAge drops a report older than this (the sites view's
	// forget_after, so a forgotten node also leaves the stream); 0 keeps
	// reports until a newer one of the same node replaces them.
	MaxAge time.Duration
	// MaxNodes caps the stream at this many messages, one per node (the
	// sites view's max_nodes); beyond it the least recently heard node's
	// report goes first.
	MaxNodes int
	// Replicas is the JetStream replication factor (1..5).
	Replicas int
}

// StatusStreamConfig returns the status stream for prefix: the edges'
// status subjects, one message per subject (a node's newer report replaces
// its older one), limits from s, file storage, and with one replica the
// async persist mode (no fsync per report; servers before 2.12 ignore it).
func StatusStreamConfig(prefix string, s StatusStream) (jetstream.StreamConfig, error) {
	if err := wire.ValidatePrefix(prefix); err != nil {
		return jetstream.StreamConfig{}, fmt.Errorf("provision: %w", err)
	}
	if s.MaxAge < 0 {
		return jetstream.StreamConfig{}, fmt.Errorf("provision: status stream max age %v is negative", s.MaxAge)
	}
	if s.MaxNodes < 1 {
		return jetstream.StreamConfig{}, fmt.Errorf("provision: status stream max nodes %d, want >= 1", s.MaxNodes)
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		return jetstream.StreamConfig{}, fmt.Errorf("provision: status stream replicas %d is outside 1..5", s.Replicas)
	}
	persist := jetstream.DefaultPersistMode
	if s.Replicas == 1 {
		// A report is replaced every few seconds, so losing the last ones
		// to a power cut costs nothing; an fsync per report (the server
		// runs sync_interval: always for the data) would cost the data
		// streams' throughput. Replicated streams are synced on snapshot
		// anyway, and the server refuses async there.
		persist = jetstream.AsyncPersistMode
	}
	return jetstream.StreamConfig{
		Name:              wire.StatusStreamName(prefix),
		Description:       "Outpost: last status report of every edge node (core's /v1/sites after a restart)",
		Subjects:          []string{wire.StatusStreamSubjects(prefix)},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		MaxAge:            s.MaxAge,
		MaxMsgs:           int64(s.MaxNodes),
		MaxBytes:          -1,
		MaxMsgsPerSubject: 1,
		Replicas:          s.Replicas,
		PersistMode:       persist,
		// Not MetadataPrefix: tools (core tail) take streams carrying it
		// for topic streams and would try to parse reports as records.
		Metadata: map[string]string{wire.MetadataStatusPrefix: prefix},
	}, nil
}

// EnsureStatusStream creates the status stream, or brings an existing one
// to shape s. An existing stream whose subjects differ is an error (an
// operator's stream under that name; core does not take it over). If the
// stream exists with the right subjects but cannot be updated (the account
// may allow core to read streams but not to change them), it is returned
// together with the update error: it still holds the reports.
func (p *Provisioner) EnsureStatusStream(ctx context.Context, s StatusStream) (jetstream.Stream, Result, error) {
	want, err := StatusStreamConfig(p.cfg.Prefix, s)
	if err != nil {
		return nil, "", err
	}
	st, err := p.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = p.js.CreateStream(ctx, want)
		if err == nil {
			p.log.Info("status stream created", "stream", want.Name, "subjects", want.Subjects,
				"max_age", want.MaxAge, "max_msgs", want.MaxMsgs, "replicas", want.Replicas)
			return st, Created, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, "", fmt.Errorf("provision: create stream %s: %w", want.Name, err)
		}
		// Another core won the race; check what it made.
		st, err = p.js.Stream(ctx, want.Name)
	}
	if err != nil {
		return nil, "", fmt.Errorf("provision: stream %s: %w", want.Name, err)
	}
	have := st.CachedInfo().Config
	if !slices.Equal(have.Subjects, want.Subjects) {
		return nil, "", fmt.Errorf("provision: stream %s exists with subjects %v, want %v; fix or delete it", want.Name, have.Subjects, want.Subjects)
	}
	// The persist mode is left as it is: the server cannot change it, and
	// a server before 2.12 does not report it.
	want.PersistMode = have.PersistMode
	if have.MaxAge == want.MaxAge && have.MaxMsgs == want.MaxMsgs && have.MaxMsgsPerSubject == want.MaxMsgsPerSubject &&
		have.Replicas == want.Replicas && have.Discard == want.Discard {
		return st, Exists, nil
	}
	upd, err := p.js.UpdateStream(ctx, want)
	if err != nil {
		hint := ""
		if have.PersistMode == jetstream.AsyncPersistMode && want.Replicas > 1 {
			hint = " (a stream made with one replica cannot be replicated: delete it, core makes a new one; nodes reappear with their next report)"
		}
		return st, "", fmt.Errorf("provision: update stream %s to max_age %v, max_msgs %d, replicas %d: %w%s",
			want.Name, want.MaxAge, want.MaxMsgs, want.Replicas, err, hint)
	}
	p.log.Info("status stream updated", "stream", want.Name, "max_age", want.MaxAge, "max_msgs", want.MaxMsgs, "replicas", want.Replicas)
	return upd, Updated, nil
}
