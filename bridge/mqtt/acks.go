package mqtt

import (
	"context"
	"errors"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/edge/log"
)

// ack builds an acknowledgement; created (Unix seconds) only matters for
// a PUBREC kept in mochi's inflight map, which expires it from there.
func ack(id uint16, typ byte, code packets.Code, created int64) packets.Packet {
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: typ},
		PacketID:    id,
		ReasonCode:  code.Code,
		Created:     created,
	}
	if code.Code >= packets.ErrUnspecifiedError.Code {
		out.Properties.ReasonString = code.Reason
	}
	return out
}

// completeBatch acknowledges a ready prefix of a session's queue, in
// order. Success acks are written together, in one write under the
// client's lock: one system call per commit round and client instead of
// one per message, which is most of the cost of an ack. Then the publishes
// that a local subscriber or the retained store wants go to mochi.
func (h *Hook) completeBatch(s *session, cl *mochi.Client, batch []*entry) {
	now := h.cfg.Now()
	buf := make([]byte, 0, 4*len(batch))
	for _, e := range batch {
		if e.err != nil {
			writeAcks(h.cfg.Server, h.cfg.Logger, cl, buf)
			buf = buf[:0]
			h.refused(cl, e)
			continue
		}
		if q := e.pk.FixedHeader.Qos; q > 0 {
			// A success PUBACK/PUBREC needs no reason code or properties,
			// in MQTT 5 either: type, length 2, packet id.
			typ := byte(packets.Puback)
			if q == 2 {
				typ = packets.Pubrec
			}
			buf = append(buf, typ<<4, 2, byte(e.pk.PacketID>>8), byte(e.pk.PacketID))
			h.m.ackLatency.Observe(now.Sub(e.at).Seconds())
		}
	}
	// Counted before the write: a client that has its ack finds it in
	// the metrics.
	for _, e := range batch {
		switch {
		case e.err != nil:
		case e.answer:
			h.m.ack(reasonDuplicate)
		default:
			h.m.ackSuccess.Inc()
		}
	}
	writeAcks(h.cfg.Server, h.cfg.Logger, cl, buf)
	for _, e := range batch {
		if e.err != nil || e.answer {
			continue
		}
		if !e.noFanout && h.wantsFanout(s, &e.pk) {
			h.fanout(e, now)
		}
	}
}

// refused writes a refusal (or disconnects) for a failed entry.
func (h *Hook) refused(cl *mochi.Client, e *entry) {
	qos := e.pk.FixedHeader.Qos
	typ := byte(packets.Puback)
	if qos == 2 {
		typ = packets.Pubrec
	}
	reason, code := classify(e.err)
	h.m.ack(reason)
	level := slog.LevelWarn
	if reason == reasonCheck {
		// The check stage's verdict on a device's data, not a fault of the
		// node: counted, and at a device's rate, too many for WARN.
		level = slog.LevelDebug
	}
	h.cfg.Logger.Log(context.Background(), level, "mqtt: publish refused", "client", cl.ID, "topic", e.pk.TopicName, "qos", qos, "reason", reason, "err", e.err)
	v5 := cl.Properties.ProtocolVersion == 5
	var checked *refusal
	switch {
	case e.cl != cl:
		// It arrived on a connection that is gone; not acknowledged, the
		// client resends it on its new connection.
	case qos == 0 && errors.As(e.err, &checked):
		// Refused by the check stage: nothing to answer, and a disconnect
		// would not bring a QoS 0 message back; counted.
	case errors.Is(e.err, ErrPayloadTooLarge) && v5:
		_ = h.cfg.Server.DisconnectClient(cl, packets.ErrPacketTooLarge)
	case errors.Is(e.err, ErrShuttingDown) && v5:
		// Not a refusal of the message: the client resends it elsewhere or
		// after the restart.
		_ = h.cfg.Server.DisconnectClient(cl, packets.ErrServerShuttingDown)
	case errors.Is(e.err, ErrAckTimeout) && v5:
		// The record may still become durable: a negative ack could make
		// the client give up on a stored message or store it twice; a
		// disconnect makes it resend, and the resend is recognised.
		_ = h.cfg.Server.DisconnectClient(cl, packets.ErrServerBusy)
	case !v5:
		// MQTT 3.1.1 has no negative acknowledgement: close without an ack.
		cl.Stop(e.err)
	case qos > 0:
		_ = cl.WritePacket(ack(e.pk.PacketID, typ, code, 0))
	default:
		// MQTT 5 QoS 0: nothing to answer; counted.
	}
}

func classify(err error) (string, packets.Code) {
	var r *refusal
	switch {
	case errors.As(err, &r):
		return reasonCheck, packets.Code{Code: r.code, Reason: r.reason}
	case errors.Is(err, log.ErrDiskBudget):
		return reasonBudget, packets.ErrQuotaExceeded
	case errors.Is(err, ErrNotReplicated):
		return reasonNotReplicated, packets.ErrQuotaExceeded
	case errors.Is(err, ErrPayloadTooLarge), errors.Is(err, log.ErrBatchTooLarge):
		return reasonTooLarge, packets.ErrPacketTooLarge
	case errors.Is(err, ErrAckTimeout):
		return reasonTimeout, packets.ErrUnspecifiedError
	case errors.Is(err, ErrShuttingDown):
		return reasonShutdown, packets.ErrUnspecifiedError
	case errors.Is(err, log.ErrNoTopic), errors.Is(err, log.ErrNoPartition):
		return reasonBadTopic, packets.ErrUnspecifiedError
	}
	return reasonLogFailed, packets.ErrUnspecifiedError
}

// OnPacketRead catches a QoS 2 PUBLISH retransmitted after its PUBREC (the
// client did not receive it): mochi would answer it with PUBREC 0x91
// (packet identifier in use), which an MQTT 5 client takes as a failure,
// so the hook takes the id back from mochi's inflight map and answers it
// itself with a success PUBREC, without appending ([MQTT-4.3.3-10]).
func (h *Hook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos != 2 || cl.Net.Inline {
		return pk, nil
	}
	if _, ok := cl.State.Inflight.Get(pk.PacketID); !ok {
		return pk, nil
	}
	s := h.sessionFor(cl)
	s.mu.Lock()
	if takePubrec(h.cfg.Server, cl, pk.PacketID) {
		if s.rerec == nil {
			s.rerec = make(map[uint16]bool)
		}
		s.rerec[pk.PacketID] = true
	}
	s.mu.Unlock()
	return pk, nil
}
