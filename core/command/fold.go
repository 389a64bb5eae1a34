package command

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// FoldConsumer is the durable consumer core reads status records with.
const FoldConsumer = "core-command-status"

// RunFold folds the status records edges forward (log topic
// wire.CommandStatusTopic, in its stream) into the command states until
// ctx ends. A record is acknowledged only after its state is written, so
// a core killed in between folds it again; Apply makes that harmless.
// The stream must exist (core provisions it like any topic's).
func (q *Queue) RunFold(ctx context.Context) error {
	stream := wire.StreamName(q.prefix, wire.CommandStatusTopic)
	for ctx.Err() == nil {
		err := q.fold(ctx, stream)
		if ctx.Err() != nil {
			return nil
		}
		q.log.Warn("command: folding status records stopped; retrying", "stream", stream, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	return nil
}

func (q *Queue) fold(ctx context.Context, stream string) error {
	cons, err := q.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:   FoldConsumer,
		AckPolicy: jetstream.AckExplicitPolicy,
		// A record a killed core had fetched comes back after AckWait;
		// Apply puts it into the history wherever it lands.
		AckWait:       5 * time.Second,
		MaxAckPending: 256,
		Description:   "core folds command status records into " + wire.CommandStateBucket(q.prefix),
	})
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", FoldConsumer, stream, err)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(64, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			if err := q.foldMsg(ctx, m); err != nil {
				if errors.Is(err, ErrUnavailable) {
					_ = m.Nak()
					return err
				}
				// A record that cannot be folded never will be: say so
				// and move on (Term keeps it from coming back).
				q.log.Warn("command: status record dropped", "subject", m.Subject(), "err", err)
				q.m.foldDropped.Inc()
				_ = m.Term()
				continue
			}
			_ = m.DoubleAck(ctx)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return nil
}

func (q *Queue) foldMsg(ctx context.Context, m jetstream.Msg) error {
	msg, err := wire.Parse(m.Headers(), m.Data())
	if err != nil {
		return err
	}
	for _, rec := range msg.Records {
		r, err := wire.DecodeCommandStatusRecord(rec.Value)
		if err != nil {
			return err
		}
		if r.Site != msg.Origin.Site {
			return fmt.Errorf("status record for site %s came from site %s", r.Site, msg.Origin.Site)
		}
		if _, err := q.update(ctx, r.Site, r.Device, r.ID, r); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // its state is past commands.keep
			}
			return err
		}
	}
	return nil
}
