package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// minSafeDupWindow is the shortest duplicate window the forwarder does not
// warn about. The window must outlast the time a server takes to store what
// a dead connection had in flight (at most a window of messages, normally
// milliseconds) plus a restart; core's default is 2 minutes.
const minSafeDupWindow = 10 * time.Second

// resolve finds where to resume (decideResume over what the stream, the
// cursor store and an armed resend say), reports the decision, and
// persists it as the cursor. lastSeq is the stream sequence of the last
// message on the subject (0 if none), for the first publish's expectation.
func (p *partition) resolve(ctx context.Context, c *Conn) (d resume, lastSeq uint64, err error) {
	f := p.f
	rctx, cancel := context.WithTimeout(ctx, f.cfg.AckTimeout)
	defer cancel()
	st, err := p.lookupStream(rctx, c)
	if err != nil {
		return resume{}, 0, err
	}
	in := resumeInput{acked: p.acked.Load(), cursor: -1, dupWindow: st.CachedInfo().Config.Duplicates, now: time.Now()}
	if err := p.lookupLast(rctx, st, &in); err != nil {
		return resume{}, 0, err
	}
	cur, curOK, err := f.store.Cursor(ctx, f.cfg.CursorName, p.origin.Topic, p.origin.Partition)
	if err != nil {
		return resume{}, 0, fmt.Errorf("upstream: read cursor: %w", err)
	}
	if curOK {
		in.cursor = cur
	}
	in.start, in.end = p.src.StartOffset(), p.src.EndOffset()
	lg := f.log.With("topic", p.origin.Topic, "partition", p.origin.Partition, "subject", p.subject)
	p.checkDupWindow(lg, in.dupWindow)
	p.atomicOK = st.CachedInfo().Config.AllowAtomicPublish
	if f.cfg.Fenced && !p.atomicOK && !p.warnedAtomic {
		p.warnedAtomic = true
		lg.Warn("upstream: the stream does not allow atomic batches; fenced forwarding sends one message per round trip (core enables allow_atomic on the streams of topics it lists)", "stream", p.stream)
	}
	if in.resend, err = p.takeResend(ctx, lg); err != nil {
		return resume{}, 0, err
	}
	d = decideResume(in)
	p.report(ctx, lg, in, d)
	p.setAcked(d.next)
	if !curOK || cur != d.next {
		if err := p.commitCursor(ctx, d.next); err != nil {
			return resume{}, 0, err
		}
	}
	return d, in.stream.lastSeq, nil
}

// lookupLast reads the stream's last record of the partition into in. In
// a stream with buckets (core/wire TopicConfig.Buckets) records are stored
// under a bucket token, found by a wildcard in its place; the conditional
// publishes then name that subject (p.expect). Where a stream had records
// before buckets were added to it by hand, those are under the plain
// subject: if the bucketed one holds nothing, the plain one says where to
// resume, while the expectation stays on the bucketed subject (empty: 0).
func (p *partition) lookupLast(ctx context.Context, st jetstream.Stream, in *resumeInput) error {
	bucketed := wire.StreamBuckets(st.CachedInfo().Config) > 0
	lookup, err := wire.LookupSubject(p.f.cfg.Prefix, p.origin, bucketed)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	p.expect = lookup
	in.stream.last, in.stream.lastSeq, in.stream.found, err = wire.LastPosition(ctx, st, lookup)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	if bucketed && !in.stream.found {
		last, _, found, err := wire.LastPosition(ctx, st, p.subject)
		if err != nil {
			return fmt.Errorf("upstream: %w", err)
		}
		in.stream.last, in.stream.found = last, found
	}
	return nil
}

// lookupStream returns the partition's stream, getting it provisioned if
// it is missing and Config.CreateStreams allows.
func (p *partition) lookupStream(ctx context.Context, c *Conn) (jetstream.Stream, error) {
	st, err := c.js.Stream(ctx, p.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if !p.f.cfg.CreateStreams {
			return nil, fmt.Errorf("%w: %s (topic %q); run core, or set create_streams", ErrStreamMissing, p.stream, p.origin.Topic)
		}
		st, err = p.provision(ctx, c)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream: stream %s: %w", p.stream, err)
	}
	return st, nil
}

// provision asks core for the stream and, if no core answers, creates it
// with core's default shape.
func (p *partition) provision(ctx context.Context, c *Conn) (jetstream.Stream, error) {
	f, o := p.f, p.origin
	_, err := wire.RequestProvision(ctx, c.nc, f.cfg.Prefix, o.Site, o.Node, o.Topic)
	switch {
	case err == nil:
		return c.js.Stream(ctx, p.stream)
	case errors.Is(err, nats.ErrNoResponders):
		cfg, cerr := wire.StreamConfig(f.cfg.Prefix, o.Topic, wire.TopicConfig{})
		if cerr != nil {
			return nil, cerr
		}
		st, cerr := c.js.CreateStream(ctx, cfg)
		if errors.Is(cerr, jetstream.ErrStreamNameAlreadyInUse) {
			return c.js.Stream(ctx, p.stream)
		}
		if cerr != nil {
			return nil, fmt.Errorf("%w: %s: no core answered and creating it failed: %w", ErrStreamMissing, p.stream, cerr)
		}
		f.log.Info("upstream: created stream (no core answered the provision request)", "stream", p.stream, "topic", o.Topic)
		return st, nil
	case errors.Is(err, wire.ErrProvisionRefused):
		return nil, fmt.Errorf("%w: %w", ErrStreamMissing, err)
	}
	return nil, err
}

// checkDupWindow warns once per partition and process about a duplicate
// window too short for resuming to be exact (see minSafeDupWindow).
func (p *partition) checkDupWindow(lg *slog.Logger, w time.Duration) {
	if w >= minSafeDupWindow || p.warnedWindow {
		return
	}
	p.warnedWindow = true
	lg.Warn("upstream: the stream's duplicate window is short: after a restart or reconnect, messages the previous connection "+
		"had in flight that the server stores late can be stored twice; use a duplicate_window of at least "+minSafeDupWindow.String(),
		"stream", p.stream, "duplicate_window", w)
}

// report logs and counts what decideResume found, and forgets a moot
// resend.
func (p *partition) report(ctx context.Context, lg *slog.Logger, in resumeInput, d resume) {
	m, r, last := p.f.m, in.resend, in.stream.last
	switch d.resend {
	case resendHole:
		lg.Warn("upstream: resending from the first unacknowledged record: a publish failed and a later one succeeded, "+
			"so the stream may lack a record below its last; the duplicate window drops what it has, a missing record lands after later ones",
			"from", r.From, "stream_last", last)
	case resendLate:
		m.lateResends.Inc()
		lg.Error("upstream: resending from the first unacknowledged record although the failure is older than the duplicate window: "+
			"the stream may receive duplicates of records after it (same origin offset); resuming after the stream's last record would lose records",
			"from", r.From, "stream_last", last, "failed_at", r.At)
	case resendMoot:
		lg.Error("upstream: a resend was armed but the stream now ends below it; the stream may lack records",
			"resend_from", r.From, "stream_last", last)
		p.clearRedo(ctx)
	}
	if d.streamBehind > 0 {
		m.gapRecords.WithLabelValues("stream_behind").Add(float64(d.streamBehind))
		lg.Error("upstream: the stream holds fewer records than it acknowledged; not resending them",
			"stream_next", last+1, "forwarded", d.known, "missing", d.streamBehind)
	}
	if d.retention > 0 {
		m.gapRecords.WithLabelValues("retention").Add(float64(d.retention))
		lg.Error("upstream: records were deleted at the edge before they were forwarded (disk budget)",
			"from", in.start-d.retention, "log_start", in.start, "lost", d.retention)
	}
	if d.streamAhead > 0 {
		// A disk restored from an older copy, or a log reset: offsets
		// [end, next) will be written again with other records; sending
		// them would either be dropped as duplicates or give the stream two
		// different records at one offset.
		m.gapRecords.WithLabelValues("stream_ahead").Add(float64(d.streamAhead))
		lg.Error("upstream: the stream holds offsets beyond the end of the log (a disk restored from an older copy; "+
			"or, forwarding a peer's replica, the peer forwarded records before this node had them, as policy degrade allows); "+
			"records written at these offsets will NOT be forwarded", "log_end", in.end, "stream_next", d.next, "skipped", d.streamAhead)
	}
	m.resumes.WithLabelValues(string(d.source)).Inc()
	lg.Debug("upstream: resuming", "from", d.next, "source", string(d.source))
}
