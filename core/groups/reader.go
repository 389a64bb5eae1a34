package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// reader reads one bucket for its member: an ordered consumer (no state on
// the server beyond it) from the bucket's committed position, the handler
// called for every record in stream order.
type reader struct {
	bucket   int
	claimRev uint64 // the claim's revision; renewed by the member's steps
	// handled is the stream sequence of the last message whose records
	// were all handled; committed what the positions bucket holds.
	handled   atomic.Uint64
	committed atomic.Uint64
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func (r *reader) stop() {
	r.cancel()
	r.wg.Wait()
}

// startReader begins reading bucket b (claimed at revision rev).
func (m *Member) startReader(ctx context.Context, b int, rev uint64) error {
	r := &reader{bucket: b, claimRev: rev}
	key := positionKey(m.cfg.Group, b)
	var pos Position
	e, err := m.pos.Get(ctx, key)
	switch {
	case err == nil:
		if err := json.Unmarshal(e.Value(), &pos); err != nil {
			return fmt.Errorf("position %s: %w", key, err)
		}
		if pos.Topic != m.cfg.Topic {
			return fmt.Errorf("%w: position %s is of topic %q", ErrTopicMismatch, key, pos.Topic)
		}
		if !pos.Released {
			m.unclean.Add(1)
			m.cfg.Logger.Info("groups: took a bucket its last reader did not give back (it died or lost its claim): records it handled after its last commit are delivered again",
				"group", m.cfg.Group, "member", m.id, "bucket", b, "from_seq", pos.Seq+1)
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("position %s: %w", key, err)
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{m.filter(b)}}
	switch {
	case pos.Seq > 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, pos.Seq+1
	case m.cfg.Start.Kind == StartLatest:
		// Made concrete and committed at once, so that a reader taking the
		// bucket after this one died continues here instead of at its own
		// "latest" (which would skip what arrived in between).
		info, err := m.stream.Info(ctx)
		if err != nil {
			return err
		}
		r.handled.Store(info.State.LastSeq)
		if err := m.commitReader(ctx, r, false); err != nil {
			return err
		}
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, info.State.LastSeq+1
	case m.cfg.Start.Kind == StartTime:
		t := m.cfg.Start.Time
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	default:
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	r.handled.Store(max(r.handled.Load(), pos.Seq))
	r.committed.Store(max(r.committed.Load(), pos.Seq))
	// Mark the bucket taken (released: false) before reading it, so that
	// whoever takes it after this reader dies — even before its first
	// commit — knows records may come twice.
	if err := m.markTaken(ctx, key); err != nil {
		return err
	}
	cons, err := m.stream.OrderedConsumer(ctx, cc)
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", m.filter(b), err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", m.filter(b), err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	r.wg.Go(func() {
		<-rctx.Done()
		it.Stop()
	})
	r.wg.Go(func() { m.read(rctx, r, it) })
	m.mu.Lock()
	m.readers[b] = r
	m.mu.Unlock()
	m.takeovers.Add(1)
	m.cfg.Logger.Info("groups: bucket assigned", "group", m.cfg.Group, "member", m.id, "bucket", b, "from_seq", pos.Seq+1)
	if m.cfg.Assigned != nil {
		m.cfg.Assigned(b)
	}
	return nil
}

// markTaken clears the position's released flag, keeping its sequence.
func (m *Member) markTaken(ctx context.Context, key string) error {
	for attempt := 0; attempt < 5; attempt++ {
		e, err := m.pos.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			v, _ := json.Marshal(Position{Topic: m.cfg.Topic})
			if _, err = m.pos.Create(ctx, key, v); err == nil {
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("position %s: %w", key, err)
		}
		var p Position
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			return fmt.Errorf("position %s: %w", key, err)
		}
		if !p.Released {
			return nil
		}
		p.Released = false
		v, _ := json.Marshal(p)
		if _, err = m.pos.Update(ctx, key, v, e.Revision()); err == nil {
			return nil
		}
	}
	return fmt.Errorf("position %s kept changing", key)
}

// read hands every record of the bucket to the handler until stopped.
func (m *Member) read(ctx context.Context, r *reader, it jetstream.MessagesContext) {
	for {
		msg, err := it.Next()
		if err != nil {
			return // stopped
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		seq := meta.Sequence.Stream
		parsed, err := wire.Parse(msg.Headers(), msg.Data())
		if err != nil {
			// Not an Outpost record (someone published by hand): skipped,
			// as core tail does, and said.
			m.cfg.Logger.Warn("groups: skipped a message that is not an Outpost record", "bucket", r.bucket, "seq", seq, "err", err)
			r.handled.Store(seq)
			continue
		}
		for _, rec := range parsed.Records {
			if err := m.cfg.Handler(ctx, Record{Origin: parsed.Origin, Record: rec, Bucket: r.bucket, Seq: seq}); err != nil {
				if ctx.Err() != nil {
					return // stopping: the record is not handled
				}
				select {
				case m.failed <- fmt.Errorf("groups: handler: bucket %d seq %d (%s offset %d): %w", r.bucket, seq, parsed.Origin, rec.Offset, err):
				default:
				}
				return
			}
			m.handled.Add(1)
		}
		r.handled.Store(seq)
	}
}
