package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/edge/log"
)

// errReject makes mochi send nothing: the hook acknowledges itself.
var errReject = fmt.Errorf("ingest: %w", packets.ErrRejectPacket)

// handled is what OnPublish returns once the publish is the hook's: a
// rejection, so mochi sends no ack, except at QoS 0, where there is no ack
// and the packet is marked Ignore instead, which stops mochi's fan-out and
// retained store as well. An error costs mochi several allocations per
// publish (it converts its error codes to compare them, and logs every
// rejection, which copies the packet even when debug logging is off).
func handled(pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 {
		pk.Ignore = true
		return pk, nil
	}
	return pk, errReject
}

// OnPublish is the ingest pipeline, one ordered sequence as mochi's own
// processPublish (which has already applied the ACL when it calls the
// hook):
//
//  1. admit: refuse while closing, or a payload over the limit;
//  2. route once: the log topic, partition and key;
//  3. check: Config.Check may refuse, redirect or add headers;
//  4. place: a QoS 0 publish nobody on the node wants goes into the
//     connection's burst (or alone, off a Listener); everything else into
//     the session's queue, acknowledged in arrival order once durable.
//
// It takes over the acknowledgement and returns a rejection, so that mochi
// sends nothing (see handled).
func (h *Hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return fromFanout(pk), nil
	}
	s := h.sessionFor(cl)
	s.published.Add(1)
	s.lastPublish.Store(time.Now().UnixNano())
	b := burstOf(cl)

	if err := h.admit(&pk); err != nil {
		b.flush() // anything else keeps its place after the QoS 0 publishes before it
		h.countIngest(pk.FixedHeader.Qos)
		s.refuse(&entry{pk: pk, cl: cl, at: h.cfg.Now()}, err)
		return handled(pk)
	}

	target := h.cfg.Router.Route(pk.TopicName, cl.ID, pk.Payload)

	pl := h.check(cl.Properties.ProtocolVersion, cl.ID, &pk, target)
	if pl.err != nil {
		b.flush()
		h.countIngest(pk.FixedHeader.Qos)
		s.refuse(&entry{pk: pk, cl: cl, at: h.cfg.Now()}, pl.err)
		return handled(pk)
	}

	if pk.FixedHeader.Qos == 0 && (pl.redirected || !h.wantsFanout(s, &pk)) {
		if b != nil {
			b.add(h, s, cl, &pk, pl)
			return handled(pk)
		}
		h.countIngest(0)
		h.placeQoS0(s, cl, &pk, pl)
		return handled(pk)
	}
	b.flush()
	h.countIngest(pk.FixedHeader.Qos)
	h.placeQueued(s, cl, pk, pl)
	return handled(pk)
}

// admit is the pipeline's first stage: nothing is taken while the node
// drains, and a payload over the limit is refused before it costs more.
func (h *Hook) admit(pk *packets.Packet) error {
	switch {
	case h.closing.Load():
		return ErrShuttingDown
	case len(pk.Payload) > h.cfg.MaxPayloadBytes:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(pk.Payload), h.cfg.MaxPayloadBytes)
	}
	return nil
}

func (h *Hook) countIngest(qos byte) {
	h.m.ingestQoS[min(qos, 2)].Inc()
	if qos == 2 {
		h.qos2.Store(true)
	}
}

// placeQoS0 appends one QoS 0 publish that needs no fan-out, off a
// Listener's connection (which would collect it into a burst).
func (h *Hook) placeQoS0(s *session, cl *mochi.Client, pk *packets.Packet, pl placement) {
	h.track(1)
	p, err := h.cfg.Log.Partition(pl.target.Topic, pl.target.Partition)
	if err != nil {
		h.failQoS0(s, cl, pk.TopicName, 1, err)
		return
	}
	rec := h.record(s, pk, pl, h.cfg.Now(), nil)
	h.appendQoS0(s, cl, p, []log.Record{rec}, nil)
}

// placeQueued puts a publish in its session's queue, in arrival order, and
// appends it; its completion acknowledges it (acks.go). A resend of a
// publish still committing, or recently acknowledged, is answered without
// a second append (see the package doc, Duplicates).
func (h *Hook) placeQueued(s *session, cl *mochi.Client, pk packets.Packet, pl placement) {
	qos := pk.FixedHeader.Qos
	e := &entry{pk: pk, cl: cl, at: h.cfg.Now(), noFanout: pl.redirected}
	if qos == 1 {
		e.hash = hashPublish(pk)
	}

	s.mu.Lock()
	if qos > 0 {
		if _, ok := s.ids[pk.PacketID]; ok {
			// A resend of a publish still committing: its ack answers both.
			s.mu.Unlock()
			h.m.dups.Inc()
			h.m.ack(reasonDuplicate)
			return
		}
		if qos == 1 && pk.FixedHeader.Dup && s.acked(pk.PacketID, e.hash) {
			e.answer = true
			h.m.dups.Inc()
		}
		if qos == 2 && s.rerec[pk.PacketID] {
			delete(s.rerec, pk.PacketID)
			if len(s.rerec) == 0 {
				s.rerec = nil
			}
			e.answer = true
			h.m.dups.Inc()
		}
	}
	if len(s.queue) >= h.cfg.MaxInflight && !s.waitRoomLocked(h.timeout(cl)) {
		s.mu.Unlock()
		h.m.ack(reasonTimeout)
		h.m.timeouts.Inc()
		h.cfg.Logger.Warn("mqtt: client exceeded its in-flight publishes for longer than the ack timeout; disconnecting", "client", cl.ID, "max_inflight", h.cfg.MaxInflight)
		cl.Stop(ErrAckTimeout)
		return
	}
	s.addLocked(e)
	s.mu.Unlock()

	if e.answer {
		s.finish(e, nil)
		return
	}
	p, err := h.cfg.Log.Partition(pl.target.Topic, pl.target.Partition)
	if err != nil {
		s.finish(e, err)
		return
	}
	recs := []log.Record{h.record(s, &e.pk, pl, e.at, nil)}
	done := func(_ int64, err error) { s.finish(e, err) }
	if gate := h.cfg.AckGate; gate != nil {
		topic, part := pl.target.Topic, pl.target.Partition
		done = func(first int64, err error) {
			if err != nil {
				s.finish(e, err)
				return
			}
			gate(topic, part, first+1, func(err error) { s.finish(e, err) })
		}
	}
	if err := h.appendBounded(p, cl, recs, done); err != nil {
		s.finish(e, err)
	}
}

// appendBounded queues recs, waiting for room in the partition no longer
// than the client's ack timeout.
func (h *Hook) appendBounded(p *log.Partition, cl *mochi.Client, recs []log.Record, done func(int64, error)) error {
	err := p.AppendAsync(h.tryCtx, recs, done)
	if errors.Is(err, context.Canceled) {
		// The partition's queue is full: wait for room, bounded.
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout(cl))
		err = p.AppendAsync(ctx, recs, done)
		cancel()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", ErrAckTimeout, err)
	}
	return err
}
