package command

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/wire"
)

// Sites tells whether a site is known (has reported); core/sites does.
type Sites interface {
	Known(site string) bool
}

// Queue is the centre's command queue: it accepts commands (Send), keeps
// their state (Get, List) and folds the status records edges send
// upstream into it (RunFold). It keeps no state outside JetStream (Recent
// is a view of what this instance saw, for the dashboard).
type Queue struct {
	cfg    Config
	prefix string
	js     jetstream.JetStream
	sites  Sites
	log    *slog.Logger
	m      *metrics
	now    func() time.Time

	ready  atomic.Bool
	stream atomic.Pointer[jetstream.Stream]
	kv     atomic.Pointer[jetstream.KeyValue]
	recent recent // the dashboard's list (Recent)
}

// New returns a Queue; Ensure (or Run) creates the stream and bucket. log
// and reg may be nil.
func New(js jetstream.JetStream, prefix string, cfg Config, sites Sites, log *slog.Logger, reg prometheus.Registerer) (*Queue, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg, prefix: prefix, js: js, sites: sites, log: log, m: m, now: time.Now}, nil
}

// StreamConfig is the commands stream core creates: a work queue (a
// message leaves when the site's edge acknowledges it), one subject per
// device, at most MaxPerDevice messages per subject (new ones refused),
// max age MaxTTL.
func StreamConfig(prefix string, cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:                 wire.CommandStreamName(prefix),
		Subjects:             []string{wire.CommandStreamSubjects(prefix)},
		Retention:            jetstream.WorkQueuePolicy,
		Storage:              jetstream.FileStorage,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    int64(cfg.MaxPerDevice),
		MaxAge:               cfg.MaxTTL,
		MaxMsgSize:           int32(cfg.MaxPayloadBytes + 4096),
		Duplicates:           cfg.DuplicateWindow,
		Replicas:             cfg.Replicas,
		Description:          "Outpost downlink commands (core/command)",
	}
}

// Ensure creates or updates the commands stream and the state bucket.
func (q *Queue) Ensure(ctx context.Context) error {
	st, err := q.js.CreateOrUpdateStream(ctx, StreamConfig(q.prefix, q.cfg))
	if err != nil {
		return fmt.Errorf("command: stream %s: %w", wire.CommandStreamName(q.prefix), err)
	}
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      wire.CommandStateBucket(q.prefix),
		Description: "Outpost downlink command states (core/command)",
		History:     1,
		TTL:         q.cfg.Keep,
		Storage:     jetstream.FileStorage,
		Replicas:    q.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("command: bucket %s: %w", wire.CommandStateBucket(q.prefix), err)
	}
	q.stream.Store(&st)
	q.kv.Store(&kv)
	q.ready.Store(true)
	return nil
}

// Ready reports whether Ensure has succeeded.
func (q *Queue) Ready() bool { return q.ready.Load() }

func (q *Queue) bucket() (jetstream.KeyValue, error) {
	kv := q.kv.Load()
	if kv == nil {
		return nil, fmt.Errorf("%w: the command bucket is not ready yet", ErrUnavailable)
	}
	return *kv, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// build turns a request into a command, or an ErrBadRequest.
func (q *Queue) build(site, device string, req wire.CommandRequest) (wire.Command, error) {
	bad := func(err error) (wire.Command, error) {
		return wire.Command{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := wire.ValidateName("site", site); err != nil {
		return bad(err)
	}
	if err := wire.ValidateName("device", device); err != nil {
		return bad(err)
	}
	c := wire.Command{Version: wire.CommandVersion, ID: req.ID, Site: site, Device: device, Topic: req.Topic, QoS: 1, Created: q.now().UTC()}
	if c.ID == "" {
		c.ID = newID()
	} else if err := wire.ValidateCommandID(c.ID); err != nil {
		return bad(err)
	}
	if err := wire.ValidateMQTTTopic(c.Topic); err != nil {
		return bad(err)
	}
	switch {
	case req.PayloadText != nil && req.Payload != nil:
		return bad(errors.New("give payload_text or payload, not both"))
	case req.PayloadText != nil:
		c.Payload = []byte(*req.PayloadText)
	default:
		c.Payload = req.Payload
	}
	if req.QoS != nil {
		if *req.QoS > 1 {
			return bad(fmt.Errorf("qos %d: want 0 or 1", *req.QoS))
		}
		c.QoS = *req.QoS
	}
	ttl := q.cfg.DefaultTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return bad(fmt.Errorf("ttl %q: want a positive duration such as 10m", req.TTL))
		}
		if d > q.cfg.MaxTTL {
			return bad(fmt.Errorf("ttl %v is above the maximum %v (commands.max_ttl)", d, q.cfg.MaxTTL))
		}
		ttl = d
	}
	c.Expires = c.Created.Add(ttl)
	return c, nil
}

// Send accepts a command for (site, device). It returns the command's
// state: queued once it is stored in JetStream, rejected (with a reason)
// when a limit or an unknown site refuses it. The same id twice is one
// command: the second Send returns the first one's state (and, while it
// is still queued, publishes it again under the same Nats-Msg-Id, which
// the stream deduplicates, in case the first Send failed half-way).
func (q *Queue) Send(ctx context.Context, site, device string, req wire.CommandRequest) (wire.CommandState, error) {
	c, err := q.build(site, device, req)
	if err != nil {
		q.m.sent.WithLabelValues("bad_request").Inc()
		return wire.CommandState{}, err
	}
	kv, err := q.bucket()
	if err != nil {
		return wire.CommandState{}, err
	}
	key := wire.CommandStateKey(site, device, c.ID)
	status, reason := wire.StatusQueued, ""
	switch {
	case len(c.Payload) > q.cfg.MaxPayloadBytes:
		status, reason = wire.StatusRejected, wire.ReasonTooLarge
	case q.sites != nil && !q.sites.Known(site):
		status, reason = wire.StatusRejected, wire.ReasonUnknownSite
	}
	if status == wire.StatusQueued {
		if full, err := q.siteFull(ctx, site); err != nil {
			return wire.CommandState{}, err
		} else if full {
			status, reason = wire.StatusRejected, wire.ReasonQueueFull
		}
	}
	st := wire.NewCommandState(c, status, reason)
	if status == wire.StatusRejected {
		st.Payload = nil // not kept: it may be what was too large
	}
	b, _ := json.Marshal(st)
	if _, err := kv.Create(ctx, key, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return q.resend(ctx, key)
		}
		return wire.CommandState{}, fmt.Errorf("%w: store state: %w", ErrUnavailable, err)
	}
	q.recent.note(st, q.now())
	if status == wire.StatusRejected {
		q.m.sent.WithLabelValues(reason).Inc()
		return st, nil
	}
	if err := q.publish(ctx, c); err != nil {
		if isQueueFull(err) {
			q.m.sent.WithLabelValues(wire.ReasonQueueFull).Inc()
			return q.update(ctx, site, device, c.ID, wire.CommandStatusRecord{Version: wire.CommandVersion, ID: c.ID, Site: site, Device: device,
				Status: wire.StatusRejected, Time: q.now().UTC(), Reason: wire.ReasonQueueFull, Node: "core"})
		}
		return wire.CommandState{}, fmt.Errorf("%w: publish: %w (send it again with id %s)", ErrUnavailable, err, c.ID)
	}
	q.m.sent.WithLabelValues("queued").Inc()
	return st, nil
}

// resend answers a Send with an id already taken.
func (q *Queue) resend(ctx context.Context, key string) (wire.CommandState, error) {
	site, device, id := splitKey(key)
	st, err := q.Get(ctx, site, device, id)
	if err != nil {
		return st, err
	}
	q.m.sent.WithLabelValues("duplicate").Inc()
	if st.Status == wire.StatusQueued && q.now().Sub(st.Created) < q.cfg.DuplicateWindow {
		if err := q.publish(ctx, st.Command); err != nil && !isQueueFull(err) {
			return wire.CommandState{}, fmt.Errorf("%w: publish: %w", ErrUnavailable, err)
		}
	}
	return st, nil
}

func splitKey(key string) (site, device, id string) {
	parts := strings.SplitN(key, ".", 3)
	return parts[0], parts[1], parts[2]
}

func (q *Queue) publish(ctx context.Context, c wire.Command) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(wire.CommandSubject(q.prefix, c.Site, c.Device))
	msg.Data = b
	_, err = q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(c.ID), jetstream.WithExpectStream(wire.CommandStreamName(q.prefix)))
	return err
}

// isQueueFull: the stream refused the message for its per-subject (per
// device) or total limit.
func isQueueFull(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return strings.Contains(apiErr.Description, "maximum messages")
	}
	return strings.Contains(err.Error(), "maximum messages")
}

// siteFull counts the commands waiting in the centre for site. Two Sends
// racing may both pass at the limit: the bound is MaxPerSite plus the
// number of concurrent Sends.
func (q *Queue) siteFull(ctx context.Context, site string) (bool, error) {
	sp := q.stream.Load()
	if sp == nil {
		return false, fmt.Errorf("%w: the commands stream is not ready yet", ErrUnavailable)
	}
	info, err := (*sp).Info(ctx, jetstream.WithSubjectFilter(wire.CommandSiteFilter(q.prefix, site)))
	if err != nil {
		return false, fmt.Errorf("%w: stream info: %w", ErrUnavailable, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n >= uint64(q.cfg.MaxPerSite), nil
}

// Get returns a command's state. A command still queued in the centre
// after its time to live reads as expired (written back, reason ttl, node
// "core").
func (q *Queue) Get(ctx context.Context, site, device, id string) (wire.CommandState, error) {
	if err := wire.ValidateName("site", site); err != nil {
		return wire.CommandState{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := wire.ValidateName("device", device); err != nil {
		return wire.CommandState{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := wire.ValidateCommandID(id); err != nil {
		return wire.CommandState{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	kv, err := q.bucket()
	if err != nil {
		return wire.CommandState{}, err
	}
	e, err := kv.Get(ctx, wire.CommandStateKey(site, device, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return wire.CommandState{}, fmt.Errorf("%w: command %s for %s/%s", ErrNotFound, id, site, device)
	}
	if err != nil {
		return wire.CommandState{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	st, err := wire.DecodeCommandState(e.Value())
	if err != nil {
		return wire.CommandState{}, err
	}
	if st.Status == wire.StatusQueued && q.now().After(st.Expires) {
		return q.update(ctx, site, device, id, wire.CommandStatusRecord{Version: wire.CommandVersion, ID: id, Site: site, Device: device,
			Status: wire.StatusExpired, Time: st.Expires, Reason: wire.ReasonExpiredInCentre, Node: "core"})
	}
	return st, nil
}

// MaxList bounds List.
const MaxList = 100

// List returns the device's most recent commands (at most MaxList, newest
// first).
func (q *Queue) List(ctx context.Context, site, device string) ([]wire.CommandState, error) {
	if err := wire.ValidateName("site", site); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := wire.ValidateName("device", device); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	kv, err := q.bucket()
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, wire.CommandStateKey(site, device, "*"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer lister.Stop()
	var out []wire.CommandState
	for key := range lister.Keys() {
		_, _, id := splitKey(key)
		st, err := q.Get(ctx, site, device, id)
		if err != nil {
			continue // deleted or expired between listing and reading
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b wire.CommandState) int { return b.Created.Compare(a.Created) })
	if len(out) > MaxList {
		out = out[:MaxList]
	}
	for i := range out {
		out[i].Payload = nil // lists stay small; GET one command for it
	}
	return out, nil
}

// update folds r into the command's state with compare-and-set, retrying
// on a concurrent writer.
func (q *Queue) update(ctx context.Context, site, device, id string, r wire.CommandStatusRecord) (wire.CommandState, error) {
	kv, err := q.bucket()
	if err != nil {
		return wire.CommandState{}, err
	}
	key := wire.CommandStateKey(site, device, id)
	for attempt := 0; ; attempt++ {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return wire.CommandState{}, fmt.Errorf("%w: command %s", ErrNotFound, key)
		}
		if err != nil {
			return wire.CommandState{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		st, err := wire.DecodeCommandState(e.Value())
		if err != nil {
			return wire.CommandState{}, err
		}
		if !st.Apply(r) {
			return st, nil
		}
		b, _ := json.Marshal(st)
		if _, err = kv.Update(ctx, key, b, e.Revision()); err == nil {
			q.m.status.WithLabelValues(site, string(r.Status), r.Reason).Inc()
			q.recent.note(st, q.now())
			return st, nil
		}
		if attempt >= 20 || ctx.Err() != nil {
			return wire.CommandState{}, fmt.Errorf("%w: update %s: %w", ErrUnavailable, key, err)
		}
	}
}
