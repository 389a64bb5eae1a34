// Package mqtt is the ingest hook of the embedded mochi-mqtt broker: every
// PUBLISH becomes a record in the edge log, and a QoS 1 or 2 publish is
// acknowledged only once its record is durable (G1).
//
// # The pipeline
//
// OnPublish is one ordered pipeline per publish, as mochi's processPublish
// is (pipeline.go), after mochi's own ACL check:
//
//  1. admit: refused while the node drains, or a payload over
//     MaxPayloadBytes;
//  2. route once: log topic, partition and key (bridge/route);
//  3. check: Config.Check (check.go) sees a read-only Publish and returns a
//     Verdict: accept (optionally with extra record headers), refuse (MQTT
//     5 QoS 1/2: PUBACK/PUBREC with the verdict's code and reason string;
//     MQTT 3.1.1: disconnect without an ack; QoS 0: dropped and counted),
//     or redirect to another log topic (a dead letter, same key; not fanned
//     out). nil accepts everything; the schema check plugs in here;
//  4. place: a QoS 0 publish that nobody on the node wants goes into the
//     connection's burst (burst.go) or alone; everything else into the
//     session's queue (session.go), acknowledged in arrival order (acks.go).
//
// A publish refused at stage 1 or 3 takes the session queue too, so its
// refusal goes out in arrival order. The count of placed, unfinished
// publishes (Pending, what Drain waits for) changes in one function, track.
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
// # Message expiry
//
// A fanned-out publish keeps its MQTT 5 Message Expiry Interval, counted
// from receipt: the time it waited for its commit is taken off, and one
// that expired meanwhile is stored but not delivered
// (outpost_mqtt_expired_before_fanout_total). Messages queued for an
// offline persistent session expire in mochi's inflight map, and a session
// that resumes has its expired ones dropped before mochi resends the rest
// (fanout.go, mochi.go).
//
// # Connections
//
// A Listener (listener.go) applies a Gate (gate.go): connection count,
// connect rate, a deadline and a length cap on the first packet (conn.go,
// which also holds the read-ahead and the connection's burst). A
// connection refused at max_connections or connect_rate is answered with a
// CONNACK refusal if its CONNECT arrives in time (refuse.go). OnConnect
// applies KeepaliveMax (keepalive.go). BrokerLogger keeps mochi's log of a
// client's protocol violation to one line (brokerlog.go).
//
// # Goroutines
//
// The hook starts goroutines only through Hook.spawn: one ack drainer per
// session while its queue has completed entries, and the refusal of a
// failed QoS 0 append (the log's committer never writes to the network).
// Hook.Close waits for them; call it after the broker is closed. Drain is
// woken by the completion that empties the count, not by polling. A
// Listener waits in Close for the goroutines answering refused connections.
//
// # Files
//
//	hook.go       Config, Hook, session lifecycle hooks, Run, Drain, Close
//	pipeline.go   OnPublish: admit, route, check, place
//	check.go      the check stage: Publish, Verdict
//	session.go    a session's ordered queue and its drainer
//	burst.go      QoS 0 bursts and unsubscribed QoS 0 appends
//	headers.go    record headers and the per-session topic cache
//	acks.go       acknowledgements and refusals, QoS 2 retransmissions
//	replicated.go AckGate (acks held for site replication), ErrNotReplicated
//	fanout.go     delivery to local subscribers, message expiry
//	mochi.go      every touch of mochi internals, with the invariants relied on
//	keepalive.go  KeepaliveMax
//	sessions.go   SessionCap
//	gate.go conn.go listener.go refuse.go   listeners and their limits
//	brokerlog.go  BrokerLogger
//
// Lock order: Hook.mu, then session.mu, then mochi's Inflight lock. A
// connection accepted by a Listener remembers its session, so publishes do
// not take Hook.mu.
package mqtt
