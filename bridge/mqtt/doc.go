// Package mqtt is the ingest hook of the embedded mochi-mqtt broker: every
// PUBLISH becomes a record in the edge log, and a QoS 1 or 2 publish is
// acknowledged only once its record is durable (G1).
//
// # Taking over the acknowledgement
//
// mochi calls OnPublish on the client's read goroutine and writes the PUBACK
// when it returns, so a hook that blocks until the record is durable allows
// one group commit per message per client. Hook instead appends with
// log.AppendAsync and returns packets.ErrRejectPacket, so mochi sends
// nothing; when the commit completes, the hook writes the acknowledgement
// itself:
//
//   - Each client session has a queue of its publishes in arrival order. A
//     commit completion marks its entry done; the ready prefix of the queue
//     is then acknowledged by one drainer goroutine per session, so acks go
//     out in arrival order ([MQTT-4.6.0-2], [MQTT-4.6.0-3]) even when one
//     client publishes to several partitions whose commits finish out of
//     order. Commit callbacks never block: they only mark and wake.
//   - QoS 1: PUBACK. QoS 2: PUBREC, stored in mochi's inflight map before it
//     is written, so mochi's own PUBREL handling answers PUBCOMP and frees
//     the packet id, as it does for its own QoS 2 flow.
//   - The success acks of one drain round are encoded by the hook (4 bytes
//     each) and written in one write, under the client's lock that mochi's
//     WritePacket also takes: one system call per commit round and client
//     rather than one per message (write system calls were the largest
//     cost in CPU profiles of 100 pipelining clients).
//   - After a successful ack the publish is handed to mochi's inline client
//     (Server.InjectPacket), which delivers it to local subscribers and
//     retains it if asked: subscribers see only durable data.
//
// # QoS 0
//
// A QoS 0 publish has no ack; what it shares with the others is that it is
// appended and committed (G1), and that local subscribers get it only once
// it is durable, in order per publisher. Most QoS 0 traffic goes to topics
// nobody on the node subscribes to, so the hook asks whether any local
// subscription matches (mochi's topic index, cached per session and topic
// until OnSubscribed or OnUnsubscribed changes a generation counter) and,
// if none does and the publish is not retained, skips the session queue,
// the packet copy and the fan-out. Such publishes of one connection are
// collected while mochi works through the bytes of one network read and
// appended together when its reader goes back to the network (the
// Listener's connection calls the hook before each read), before any other
// publish of the connection, and when the connection ends: one append, one
// completion and one time stamp per burst, with header slices shared
// between records. A busy connection reads 16 KiB at a time (the
// Listener's read-ahead, taken from a pool only while reads come back full)
// rather than mochi's 2 KiB, so a burst is up to a hundred or so small
// publishes and a read system call serves as many. Drain counts them like any other publish. A QoS 0
// publish that someone subscribes to, or that is retained, takes the queue
// like QoS 1 and is fanned out in order after its commit.
//
// # Duplicates
//
// A PUBLISH whose packet id is still waiting for its commit (a DUP resend
// after a reconnect with a persistent session, or a QoS 2 retransmission) is
// not appended again: the pending original's ack answers it. A QoS 2
// retransmission after its PUBREC (whose id mochi's inflight map holds
// until PUBREL) is answered with the same success PUBREC, not appended:
// OnPacketRead takes the id out of mochi's map first, because mochi would
// answer with 0x91 (packet identifier in use), a failure to an MQTT 5
// client. A QoS 1 resend
// whose first PUBACK was written but lost with the connection, and whose
// (packet id, payload) was acknowledged among the last MaxInflight publishes
// of the session, is acknowledged again without a second append; beyond that
// window a resend is stored twice, which QoS 1 (at least once) permits.
//
// # Refusals
//
// A publish is never acknowledged as a success unless its record is durable.
// Disk budget reached → MQTT 5 PUBACK/PUBREC 0x97 (quota exceeded); failed
// or closed log → 0x80; payload over MaxPayloadBytes → DISCONNECT 0x95;
// ack timeout → DISCONNECT 0x89 and shutdown → DISCONNECT 0x8B, without an
// ack, because the record may still become durable and a resend is
// recognised. MQTT 3.1.1 has no negative ack: the client is disconnected
// without an ack, and will resend. Refusals are sent in arrival order like acks,
// and counted by reason in outpost_mqtt_acks_total.
//
// # Bounds
//
// A session holds at most MaxInflight unacknowledged publishes; the next
// one blocks the client's read goroutine (TCP back-pressure) for at most
// AckTimeout, then the client is disconnected. A session whose oldest
// publish has waited longer than AckTimeout (capped below the client's
// keepalive) is disconnected too, so a stuck disk shows up as reconnects,
// not as silent memory growth.
//
// Lock order: Hook.mu, then session.mu, then mochi's Inflight lock. A
// connection accepted by a Listener remembers its session, so publishes do
// not take Hook.mu.
package mqtt
