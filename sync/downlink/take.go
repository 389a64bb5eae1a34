package downlink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// linkConn is the part of *upstream.Link the taker uses.
type linkConn interface {
	Wait(ctx context.Context) (*upstream.Conn, error)
}

// Run takes the site's commands from the centre whenever the link is up,
// until ctx ends: it pulls from durable consumer edge-<site> on the
// commands stream and acknowledges each command only after Take made it
// durable here. A command whose acknowledgement is lost (link cut, node
// killed) is redelivered by JetStream and dropped by Take as a duplicate.
func (s *Store) Run(ctx context.Context, link linkConn) error {
	retry := s.cfg.Retry
	for ctx.Err() == nil {
		conn, err := link.Wait(ctx)
		if err != nil {
			return nil
		}
		began := time.Now()
		err = s.pull(ctx, conn)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > 10*time.Second {
			retry = s.cfg.Retry // it ran a while: a new failure starts the backoff afresh
		}
		s.m.pulls.WithLabelValues("error").Inc()
		s.log.Warn("downlink: taking commands paused; retrying", "err", err, "retry_in", retry)
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
		retry = min(retry*2, 30*time.Second)
	}
	return nil
}

// consumerConfig is the edge's durable consumer on the commands stream
// (PROTOCOL.md §9): filtered to its site, explicit acks.
func consumerConfig(prefix, site string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       wire.CommandConsumerName(site),
		FilterSubject: wire.CommandSiteFilter(prefix, site),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1024,
		Description:   "Outpost edge of site " + site + " takes its commands (sync/downlink)",
	}
}

func (s *Store) pull(ctx context.Context, conn *upstream.Conn) error {
	js := conn.JetStream()
	stream := wire.CommandStreamName(s.cfg.Prefix)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := js.CreateOrUpdateConsumer(cctx, stream, consumerConfig(s.cfg.Prefix, s.cfg.Site))
	cancel()
	if err != nil {
		return fmt.Errorf("consumer %s on stream %s (is core running?): %w", wire.CommandConsumerName(s.cfg.Site), stream, err)
	}
	for ctx.Err() == nil {
		if !conn.Up() {
			return errors.New("link down")
		}
		batch, err := cons.Fetch(s.cfg.FetchBatch, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			if err := s.takeMsg(ctx, m); err != nil {
				_ = m.Nak()
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		s.m.pulls.WithLabelValues("ok").Inc()
	}
	return nil
}

func (s *Store) takeMsg(ctx context.Context, m jetstream.Msg) error {
	c, err := wire.DecodeCommand(m.Data())
	if err != nil {
		// Never valid, never will be: drop it loudly.
		s.log.Warn("downlink: dropping an undecodable command", "subject", m.Subject(), "err", err)
		return m.Term()
	}
	if err := s.Take(ctx, c); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A lost ack only means a redelivery, which Take drops.
	if err := m.DoubleAck(actx); err != nil {
		return fmt.Errorf("ack command %s: %w", c.ID, err)
	}
	return nil
}
