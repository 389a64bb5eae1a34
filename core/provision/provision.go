package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/wire"
)

// ErrNotConfigured is returned for an unlisted topic when auto-provisioning
// is off.
var ErrNotConfigured = errors.New("provision: topic is not configured and auto_provision is off")

// Provisioner ensures streams exist. It is safe for concurrent use.
type Provisioner struct {
	js       jetstream.JetStream
	cfg      Config
	defaults wire.TopicConfig
	topics   map[string]wire.TopicConfig
	log      *slog.Logger
	requests *prometheus.CounterVec // nil without a registerer
}

// New returns a Provisioner for cfg. log may be nil (discard); reg may be
// nil (no metrics).
func New(js jetstream.JetStream, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Provisioner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &Provisioner{js: js, cfg: cfg, log: log, topics: make(map[string]wire.TopicConfig, len(cfg.Topics))}
	p.defaults = cfg.Defaults.WithDefaults(wire.DefaultTopicConfig())
	for _, t := range cfg.Topics {
		p.topics[t.Name] = t.WithDefaults(p.defaults)
	}
	if reg != nil {
		p.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_core_provision_requests_total",
			Help: "Stream provision requests from edges, by result (exists, created, updated, refused, error).",
		}, []string{"result"})
		if err := reg.Register(p.requests); err != nil {
			return nil, fmt.Errorf("provision: register metrics: %w", err)
		}
	}
	return p, nil
}

// Result says what Ensure did.
type Result string

// Results of Ensure.
const (
	Exists  Result = "exists"
	Created Result = "created"
	Updated Result = "updated"
)

// EnsureConfigured creates or updates the stream of every listed topic. It
// stops at the first failure.
func (p *Provisioner) EnsureConfigured(ctx context.Context) error {
	for _, t := range p.cfg.Topics {
		if _, _, err := p.Ensure(ctx, t.Name); err != nil {
			return err
		}
	}
	return nil
}

// Ensure makes sure the stream for topic exists: a listed topic's stream is
// created or brought to its configured shape; an unlisted topic's stream is
// created with the defaults if AutoProvision is on, and left as it is if it
// already exists.
func (p *Provisioner) Ensure(ctx context.Context, topic string) (string, Result, error) {
	tc, listed := p.topics[topic]
	if !listed {
		tc = p.defaults
	}
	want, err := wire.StreamConfig(p.cfg.Prefix, topic, tc)
	if err != nil {
		return "", "", err
	}
	st, err := p.js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if !listed && !p.cfg.AutoProvision {
			return want.Name, "", fmt.Errorf("%w: %s (list it under streams.topics or set streams.auto_provision: true)", ErrNotConfigured, topic)
		}
		return p.create(ctx, want)
	case err != nil:
		return want.Name, "", fmt.Errorf("provision: stream %s: %w", want.Name, err)
	}
	have := st.CachedInfo().Config
	if !slices.Equal(have.Subjects, want.Subjects) {
		return want.Name, "", fmt.Errorf("provision: stream %s exists with subjects %v, want %v; fix or delete it", want.Name, have.Subjects, want.Subjects)
	}
	// Buckets are fixed at creation: adding a transform to a stream made
	// without, or changing its count, would move origin partitions between
	// buckets under running consumer groups (order per origin partition).
	if hb := wire.StreamBuckets(have); hb != tc.WithDefaults(p.defaults).Buckets && listed {
		p.log.Warn("stream keeps its buckets: they are fixed when a stream is created (make a new topic to change them)",
			"stream", want.Name, "topic", topic, "buckets", hb, "configured", tc.WithDefaults(p.defaults).Buckets)
	}
	want.SubjectTransform = have.SubjectTransform
	if v, ok := have.Metadata[wire.MetadataBuckets]; ok {
		want.Metadata[wire.MetadataBuckets] = v
	} else {
		delete(want.Metadata, wire.MetadataBuckets)
	}
	if !listed || sameShape(have, want) {
		return want.Name, Exists, nil
	}
	if _, err := p.js.UpdateStream(ctx, want); err != nil {
		return want.Name, "", fmt.Errorf("provision: update stream %s: %w", want.Name, err)
	}
	p.log.Info("stream updated to configured shape", "stream", want.Name, "topic", topic,
		"duplicate_window", want.Duplicates, "max_age", want.MaxAge, "max_bytes", want.MaxBytes, "replicas", want.Replicas)
	return want.Name, Updated, nil
}

func (p *Provisioner) create(ctx context.Context, want jetstream.StreamConfig) (string, Result, error) {
	_, err := p.js.CreateStream(ctx, want)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another core (or a concurrent request) won the race.
		return want.Name, Exists, nil
	}
	if err != nil {
		return want.Name, "", fmt.Errorf("provision: create stream %s: %w", want.Name, err)
	}
	p.log.Info("stream created", "stream", want.Name, "subjects", want.Subjects,
		"duplicate_window", want.Duplicates, "max_age", want.MaxAge, "max_bytes", want.MaxBytes, "replicas", want.Replicas)
	return want.Name, Created, nil
}

func sameShape(a, b jetstream.StreamConfig) bool {
	return a.Duplicates == b.Duplicates && a.MaxAge == b.MaxAge && a.MaxBytes == b.MaxBytes &&
		a.Replicas == b.Replicas && a.Discard == b.Discard && a.AllowDirect == b.AllowDirect &&
		a.AllowAtomicPublish == b.AllowAtomicPublish
}

// RequestTimeout bounds the JetStream calls one provision request makes.
const RequestTimeout = 10 * time.Second

// Handle answers one wire.ProvisionRequest; subscribe it (queue group, so
// one core answers) on wire.ProvisionSubscription.
func (p *Provisioner) Handle(m *nats.Msg) {
	rep := p.handle(m)
	b, err := json.Marshal(rep)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		p.log.Warn("provision: cannot reply", "subject", m.Subject, "err", err)
	}
}

func (p *Provisioner) handle(m *nats.Msg) wire.ProvisionReply {
	site, node, err := wire.ParseProvisionSubject(p.cfg.Prefix, m.Subject)
	if err != nil {
		p.count("refused")
		return wire.ProvisionReply{Error: err.Error()}
	}
	var req wire.ProvisionRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		p.count("refused")
		return wire.ProvisionReply{Error: "provision: bad request: " + err.Error()}
	}
	if err := wire.ValidateTopic(req.Topic); err != nil {
		p.count("refused")
		return wire.ProvisionReply{Error: err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	name, res, err := p.Ensure(ctx, req.Topic)
	if err != nil {
		if errors.Is(err, ErrNotConfigured) {
			p.count("refused")
		} else {
			p.count("error")
		}
		p.log.Warn("provision request failed", "site", site, "node", node, "topic", req.Topic, "err", err)
		return wire.ProvisionReply{Stream: name, Error: err.Error()}
	}
	p.count(string(res))
	if res != Exists {
		p.log.Info("provisioned on request", "site", site, "node", node, "topic", req.Topic, "stream", name, "result", res)
	}
	return wire.ProvisionReply{Stream: name, Subjects: wire.StreamSubjects(p.cfg.Prefix, req.Topic), Created: res == Created}
}

func (p *Provisioner) count(result string) {
	if p.requests != nil {
		p.requests.WithLabelValues(result).Inc()
	}
}
