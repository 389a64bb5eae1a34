package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A resend (redo) is armed when the server refused a publish, or a publish
// failed and a later one of the same window succeeded: the stream may lack
// a record below its last offset, so the next resume resends from the
// first unacknowledged record instead (the duplicate window drops what was
// stored). It is saved in the store until the resend has passed what was
// in flight, so a restart in between does not resume after the stream's
// last record and leave the hole. See doc.go for when the duplicate window
// is trusted, and decideResume for how a resend is taken up.

// redoBucket is the store bucket resends are saved in, keyed by cursor
// name, topic and partition.
const redoBucket = "upstream.redo"

// redo is a resend armed by abort. It is stored as JSON (version 1).
type redo struct {
	V    int       `json:"v"`
	From int64     `json:"from"`  // first unacknowledged record
	To   int64     `json:"until"` // last record that was in flight: the resend is done once past it
	At   time.Time `json:"at"`    // when the failure happened (the duplicate window counts from it)
	// Suspect: a later publish of the window succeeded, so the stream may
	// hold records after From; otherwise the server refused From and the
	// stream ends below it.
	Suspect bool   `json:"suspect"`
	Cuts    []span `json:"cuts,omitempty"` // batch boundaries to repeat, so resends carry the same Nats-Msg-Id
}

// span is the first and last offset of one batch message.
type span struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// abort stops a pump: it waits for the outcome of every message still in
// flight (each ends by ack, error or AckTimeout), moves acked along any
// further contiguous acks, and arms a resend from the first failed message
// when the stream may not end right below it: the server refused it (a
// refusal is no proof the ones before it were the last stored; it often
// clears while later messages are in flight), or a later message
// succeeded. Otherwise every failure was an unknown outcome (timeout,
// disconnect) on the window's one connection, where the stream holds a
// prefix of the window, and resuming after the stream's last record is
// exact. headFailed says q[0] is the message that failed with err.
func (p *partition) abort(ctx context.Context, q []inflight, headFailed bool, err error) error {
	if headFailed && len(q) == 1 && isStreamMoved(err) {
		// The conditional first message after a resume: nothing else is in
		// flight and the stream holds more than resolve saw.
		return fmt.Errorf("%w: %w", errStreamMoved, err)
	}
	failedAt := -1
	refused := false
	if headFailed {
		failedAt = 0
		refused = isRefusal(err)
	}
	suspect := false
	for i := range q {
		if i == failedAt {
			continue
		}
		select {
		case <-q[i].fut.Ok():
			if failedAt < 0 {
				p.setAcked(q[i].last + 1)
				p.countForwarded(q[i])
			} else {
				suspect = true
			}
		case e := <-q[i].fut.Err():
			if failedAt < 0 {
				failedAt = i
				refused = isRefusal(e)
				if !headFailed {
					err = e
				}
			}
		case <-ctx.Done():
			return err
		}
	}
	// Fenced forwarding needs no resend: every batch expects the one before
	// it, so the stream never holds a record above a missing one.
	if failedAt < 0 || !(suspect || refused) || p.f.cfg.Fenced {
		if p.redoSaved && p.acked.Load() > p.redoUntil {
			p.clearRedo(ctx)
		}
		return err
	}
	p.armResend(ctx, q[failedAt:], suspect)
	return err
}

// armResend arms (and saves) a resend of q, whose head failed.
func (p *partition) armResend(ctx context.Context, q []inflight, suspect bool) {
	// The duplicate window counts from when the server saw a message, so
	// the resend's age is that of the oldest message it repeats.
	r := &redo{V: 1, From: q[0].first, To: q[len(q)-1].last, At: q[0].at, Suspect: suspect}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	if p.f.cfg.Mode == ModeBatch {
		for _, h := range q {
			r.Cuts = append(r.Cuts, span{h.first, h.last})
		}
	}
	if p.redoSaved {
		// An earlier resend is not through yet: keep its end too.
		r.To = max(r.To, p.redoUntil)
	}
	p.redo = r
	p.saveRedo(ctx, r)
}

// isRefusal tells a definite "not stored" answer from the server (an API
// error, or no stream listening) from an unknown outcome.
func isRefusal(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// isStreamMoved reports a conditional publish refused because the subject
// holds more than the publisher expected. A fenced batch holding a record
// the stream already has is refused for its Nats-Msg-Id before its
// expectation is checked (JetStream checks duplicates first), which means
// the same: someone else forwarded it since the resume point was read.
func isStreamMoved(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant ||
			apiErr.ErrorCode == errCodeBatchDuplicate)
}

// errCodeBatchDuplicate is JetStream's "atomic publish batch contains
// duplicate message id" (nats.go has no constant for it).
const errCodeBatchDuplicate jetstream.ErrorCode = 10201

// takeResend returns the resend to do now: the one armed in this process,
// or on the first resolve since start, one a predecessor saved (one armed
// in this process replaced any saved one under the same key).
func (p *partition) takeResend(ctx context.Context, lg *slog.Logger) (*redo, error) {
	r := p.redo
	p.redo = nil
	if p.redoLoaded || r != nil {
		p.redoLoaded = true
		return r, nil
	}
	r, err := p.loadRedo(ctx)
	if err != nil {
		return nil, err
	}
	p.redoLoaded = true
	if r != nil {
		p.redoSaved, p.redoUntil = true, r.To
		lg.Warn("upstream: resuming a resend armed before the restart", "from", r.From, "until", r.To, "armed_at", r.At)
	}
	return r, nil
}

func (p *partition) redoKey() string {
	return p.f.cfg.CursorName + "/" + p.origin.Topic + "/" + p.pkey
}

// saveRedo stores r so a restart resumes the resend. If the store fails the
// resend still happens in this run; the failure is logged, since a restart
// before it completes could then leave a hole.
func (p *partition) saveRedo(ctx context.Context, r *redo) {
	p.f.m.redoPersisted.Inc()
	b, err := json.Marshal(r)
	if err == nil {
		err = p.f.store.Put(ctx, redoBucket, p.redoKey(), b)
	}
	if err != nil {
		p.f.log.Error("upstream: resend not saved; a restart before it completes may lose records below the stream's last",
			"topic", p.origin.Topic, "partition", p.origin.Partition, "from", r.From, "err", err)
		return
	}
	p.redoSaved, p.redoUntil = true, r.To
}

func (p *partition) loadRedo(ctx context.Context) (*redo, error) {
	b, ok, err := p.f.store.Get(ctx, redoBucket, p.redoKey())
	if err != nil {
		return nil, fmt.Errorf("upstream: read saved resend: %w", err)
	}
	if !ok {
		return nil, nil
	}
	var r redo
	if err := json.Unmarshal(b, &r); err != nil || r.V != 1 || r.From < 0 || r.To < r.From {
		// Refusing to start would stop forwarding for good; resuming from
		// the stream is what the node did before resends were saved.
		p.f.log.Error("upstream: saved resend unreadable; ignoring it", "topic", p.origin.Topic, "partition", p.origin.Partition, "value", string(b), "err", err)
		p.clearRedo(ctx)
		return nil, nil
	}
	return &r, nil
}

func (p *partition) clearRedo(ctx context.Context) {
	if err := p.f.store.Delete(ctx, redoBucket, p.redoKey()); err != nil {
		p.f.log.Warn("upstream: saved resend not cleared; a restart will resend again (duplicates are dropped by the window)",
			"topic", p.origin.Topic, "partition", p.origin.Partition, "err", err)
		return
	}
	p.redoSaved = false
}
