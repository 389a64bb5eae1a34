package mqtt

// Every touch of mochi's internals is in this file, so that a mochi
// upgrade is one file to re-check. Written against mochi-mqtt/server
// v2.7.9, it relies on these invariants of that version:
//
//  1. processPublish calls OnPublish after the ACL check and after
//     resolving topic aliases, and sends nothing when a hook returns an
//     error wrapping packets.ErrRejectPacket; a QoS 0 packet returned
//     with Ignore set is neither fanned out nor retained.
//  2. A client's Inflight map answers a QoS 2 PUBLISH whose id holds a
//     PUBREC with PUBREC 0x91, and processPubrel answers PUBREL with
//     PUBCOMP and deletes the id: a PUBREC the hook stores there is
//     completed by mochi. Every Set or Delete is mirrored in
//     Server.Info.Inflight by the caller, as mochi's own code does.
//  3. Client.WritePacket holds the client's lock (Client.Lock) around its
//     write to Net.Conn, so bytes written under that lock never interleave
//     with mochi's packets; mochi counts Info.BytesSent and PacketsSent
//     itself only for what it writes.
//  4. InjectPacket runs processPublish for the inline client, which sets
//     the packet's Origin to the inline client's id, stamps Created and
//     Expiry from Properties.MessageExpiryInterval, fans out and retains,
//     and calls OnPublish for the inline client (where the device's id,
//     carried in Connect.ClientIdentifier, is put back as Origin so that
//     NoLocal works, [MQTT-3.8.3-3]). It sets the packet's ProtocolVersion
//     to the inline client's.
//  5. Queued messages (the Inflight map of an offline session) expire only
//     if their ProtocolVersion is 5 (ClearExpiredInflights, run once a
//     second, and [MQTT-3.3.2-5]); the inline client's version is 0 unless
//     set, so prepareInline sets it to 5: a device's publish (only MQTT 5
//     carries an expiry) then keeps its expiry through the fan-out.
//  6. attachClient calls OnSessionEstablish before it moves an existing
//     session's Inflight map to the new connection and resends it, so
//     expired messages can be dropped there first.
//  7. Topics.Subscribers(topic) lists every subscription (normal, shared,
//     inline) that matches a topic.
//  8. Server.SendConnack(cl, code, …) maps MQTT 5 codes to 3.1.1 return
//     codes (packets.V5CodesToV3) for a 3.1.1 client and writes CONNACK;
//     Client.State.Keepalive and ServerKeepalive are read after OnConnect
//     (deadline, CONNACK Server Keep Alive).
//  9. receivePacket logs a packet it failed to process at WARN with the
//     attributes error, client, listener and the packet as "pk"
//     (BrokerLogger, brokerlog.go, shortens that line).

import (
	"log/slog"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// prepareInline gives the inline client, which fans out the hook's
// durable publishes, MQTT 5 packets (invariant 5).
func prepareInline(s *mochi.Server) {
	if s == nil || !s.Options.InlineClient {
		return
	}
	if inline, ok := s.Clients.Get(mochi.InlineClientId); ok && inline.Net.Inline {
		inline.Properties.ProtocolVersion = 5
	}
}

// deliver hands a durable publish to mochi's inline client (invariant 4).
// The device's client id rides in the packet's otherwise unused CONNECT
// fields; fromFanout puts it back.
func deliver(s *mochi.Server, logger *slog.Logger, pk packets.Packet) {
	inline, ok := s.Clients.Get(mochi.InlineClientId)
	if !ok || !inline.Net.Inline {
		return
	}
	pk.Connect.ClientIdentifier = pk.Origin
	pk.FixedHeader.Dup = false
	pk.Properties.TopicAlias = 0
	pk.Properties.TopicAliasFlag = false
	pk.Created, pk.Expiry = 0, 0 // mochi stamps them from the remaining interval
	if err := s.InjectPacket(inline, pk); err != nil {
		logger.Debug("mqtt: fan-out failed", "topic", pk.TopicName, "err", err)
	}
}

// fromFanout is OnPublish for the inline client: the hook's own fan-out of
// a durable publish. mochi made the inline client its origin; the device
// goes back, so that a subscriber's NoLocal option filters the device's
// own publishes.
func fromFanout(pk packets.Packet) packets.Packet {
	if id := pk.Connect.ClientIdentifier; id != "" {
		pk.Origin = id
		pk.Connect.ClientIdentifier = ""
	}
	return pk
}

// hasSubscribers reports whether any subscription matches topic
// (invariant 7).
func hasSubscribers(s *mochi.Server, topic string) bool {
	found := s.Topics.Subscribers(topic)
	return len(found.Subscriptions)+len(found.Shared)+len(found.InlineSubscriptions) > 0
}

// holdPubrec stores a success PUBREC in the client's Inflight map, where
// mochi completes it (invariant 2).
func holdPubrec(s *mochi.Server, cl *mochi.Client, id uint16, at time.Time) {
	if cl.State.Inflight.Set(ack(id, packets.Pubrec, packets.CodeSuccess, at.Unix())) {
		atomic.AddInt64(&s.Info.Inflight, 1)
	}
}

// takePubrec takes a PUBREC the client did not receive back from its
// Inflight map, so that mochi does not answer the retransmitted PUBLISH
// with 0x91; it reports whether id held one (invariant 2).
func takePubrec(s *mochi.Server, cl *mochi.Client, id uint16) bool {
	in, ok := cl.State.Inflight.Get(id)
	if !ok || in.FixedHeader.Type != packets.Pubrec {
		return false
	}
	if cl.State.Inflight.Delete(id) {
		atomic.AddInt64(&s.Info.Inflight, -1)
	}
	return true
}

// writeAcks writes encoded acks under the client's write lock, the lock
// mochi's WritePacket takes, so packets never interleave (invariant 3).
func writeAcks(s *mochi.Server, logger *slog.Logger, cl *mochi.Client, buf []byte) {
	if len(buf) == 0 || cl.Net.Conn == nil || cl.Closed() {
		return
	}
	cl.Lock()
	n, err := cl.Net.Conn.Write(buf)
	cl.Unlock()
	atomic.AddInt64(&s.Info.BytesSent, int64(n))
	atomic.AddInt64(&s.Info.PacketsSent, int64(n/4))
	if err != nil {
		logger.Debug("mqtt: acks not delivered; the client will resend", "client", cl.ID, "err", err)
	}
}

// dropExpiredQueued drops the expired messages of a session about to be
// resumed by client id, before mochi resends them (invariant 6): mochi's
// own sweep runs once a second, so a client reconnecting within that
// second would otherwise get a message past its expiry.
func dropExpiredQueued(s *mochi.Server, id string, now time.Time) {
	existing, ok := s.Clients.Get(id)
	if !ok || existing.Net.Inline {
		return
	}
	existing.ClearExpiredInflights(now.Unix(), s.Options.Capabilities.MaximumMessageExpiryInterval)
}

// refuseConnect answers a CONNECT with a refusal (invariant 8).
func refuseConnect(s *mochi.Server, cl *mochi.Client, code packets.Code) {
	_ = s.SendConnack(cl, code, false, nil)
}

// capKeepalive tells an MQTT 5 client to use keepalive seconds (Server Keep
// Alive in CONNACK) and sets its read deadline by it (invariant 8).
func capKeepalive(cl *mochi.Client, seconds uint16) {
	cl.State.Keepalive = seconds
	cl.State.ServerKeepalive = true
}
