// Package upstream forwards a node's log to the central NATS JetStream
// cluster, exactly once and in order per partition (G3), after outages of any
// length (G5). It owns its metadata in the node's store: the forwarding
// cursors (name Config.CursorName), the resends armed but not yet done, and
// the origin pin (the site/node the cursors were made under; New refuses
// another, see ErrOriginChanged). The log stays the source of truth and the
// stream is what forwarding resumes from.
//
// # How a partition is forwarded
//
// One goroutine per log partition (topics created later are picked up within
// a second) loops:
//
//  1. Resolve the resume point, on start, after every reconnect and after any
//     error (the pure function decideResume decides, with a table-test row
//     for every case of steps 1 and 2 and of the resend below): the origin
//     offset of the last message the stream holds on the partition's
//     subject, plus one (wire.LastOffset); if the stream holds nothing
//     there, the cursor; if there is none, the log start. The duplicate
//     window alone would only be at-least-once after a long outage; the
//     stream's last message is exact for an outage of any length.
//  2. Keep it within the log: below the log start (records deleted at the edge
//     under the disk budget's delete-oldest policy before being forwarded) it
//     moves up, counted and logged. Beyond the log end (the stream holds offsets
//     the log does not: a node restored from an older disk) nothing is resent:
//     the partition waits until the log passes it, and the records written at
//     those offsets meanwhile are skipped, counted and logged loudly, because
//     the stream already holds other records under the same offsets. If the
//     stream holds fewer records than the cursor says were acknowledged (expired,
//     purged, or lost at the centre), the cursor wins: resending could undo a
//     purge; the gap is counted and logged (this follows wire.LastOffset's
//     advice rather than resuming from the stream).
//  3. Persist it as the cursor, then read and publish asynchronously with
//     Nats-Msg-Id from wire (so resends are deduplicated), at most
//     Config.Window messages (and 4 MiB) unacknowledged; a paused partition
//     probes with one. Acknowledgements are taken in order; the position (and,
//     every CursorInterval, the cursor) advances only along their contiguous
//     prefix. A duplicate ack counts as success. The cursor may lag the
//     position: it is what resuming falls back to when the stream holds
//     nothing, and where the retention hold stands before the first resolve.
//  4. On any error: stop sending, wait for the outcome of what is in flight,
//     back off with full jitter, and go to 1. Nothing is skipped or reordered
//     (but see the resend case below).
//
// Three details keep "resume after the stream's last message" exact, because
// that rule would skip a record the stream lacks below a later one. Together
// they make the stream hold a prefix of every window, except for records the
// server refused:
//   - nats.go's reconnect buffer is off, so nothing published while
//     disconnected goes out later behind records lost with the old connection;
//   - every message of a window goes out on the one connection the window
//     started on, or not at all. nats.go dials through a gate (gate.go) that
//     makes the partition's "connection up and not replaced" check and its
//     publish atomic with respect to reconnects: a dial bumps an epoch and is
//     deferred while a publish is between its check and nats.go's write; a
//     publish goes out only on the epoch its window started on. On one TCP
//     connection the server stores messages in the order sent, so an unknown
//     outcome (timeout, disconnect) never hides a stored record above a lost
//     one;
//   - publishes are never retried by nats.go (its no-responders retry would
//     reorder).
//
// Resolve can also come too early: messages a previous connection (or a
// killed predecessor process) had in flight may be stored only after the
// stream's last message was read, and resending them is safe only while the
// duplicate window remembers them. So the first message after every resume
// goes alone, with Nats-Expected-Last-Subject-Sequence set to the sequence
// resolve saw; if anything landed since, the server refuses it and the
// partition resolves again (counted as resumes_total{source="moved"}); its
// acknowledgement opens the window. Messages of a dead connection that the
// server takes even later than that are still dropped by the duplicate
// window; the forwarder warns about streams whose window is under 10 s.
//
// A refusal by the server (stream full, no responders, any API error) is
// the exception: the server answers no to one message and may store the
// next (a stream with room again). So a refusal, or a failure followed by an
// acknowledged message, arms a resend from the first unacknowledged record,
// saved in the metadata store (bucket upstream.redo) until the resend has
// passed what was in flight, so a restart in between resends too instead of
// resuming after the stream's last record. Where the stream holds nothing
// after the refused record the resend is exact. Where it does, the duplicate
// window drops what the stream already has and the missing record lands
// after later ones, logged as a warning: the one case where stream order can
// differ from offset order; every offset still appears exactly once. If the
// failure is older than the duplicate window (a partial failure followed by
// a long outage) it resends all the same, logged as an error and counted in
// outpost_upstream_resends_beyond_window_total: records after the failure
// may then be duplicated (same origin offset), which a consumer can drop,
// where resuming after the stream's last record would lose the missing one
// for good. Pipelined publishes cannot be made conditional on the ones
// before them with plain JetStream publishes; JetStream's fast batch
// publishing with gap mode "fail" could close this case too.
//
// # Sharing the uplink
//
// Live first: a partition whose unread lag is at most Config.LiveLagRecords
// counts as live; while a live partition publishes, backlogged partitions
// wait, and under the optional bandwidth cap (a token bucket shared by all
// partitions) live partitions take tokens first. Within one partition order
// always wins over freshness: its newest record waits behind its oldest.
//
// # Memory (G4)
//
// Per forwarding partition: at most two log reads (Config.MaxReadBytes; the
// next is read while acks are awaited, so the window never drains for a
// read) and a few hundred bytes of state. Across all partitions: at most
// Config.MaxInflightBytes of published, unacknowledged messages (nats.go
// keeps each until its ack). Nothing grows with the backlog.
//
// # Fenced forwarding (fenced.go)
//
// With Config.Fenced every batch of records goes out as a JetStream atomic
// batch (up to 1000 messages, one batch in flight) whose first message
// expects the subject's last sequence to be the one the previous batch
// ended on: the server stores the batch whole or refuses it whole, so
// nothing another forwarder of the same origin partition (or a dead
// connection's late messages) stored in between can be duplicated or
// overtaken, for an outage of any length, without the duplicate window. A
// refusal (wrong last sequence, or a record the stream already has) is
// errStreamMoved: resolve again. On a stream that does not allow atomic
// publishing (allow_atomic; core/wire sets it on the streams core makes)
// one conditional message goes per round trip. Fenced forwarding arms no
// resends: the stream never holds a record above a missing one. The price
// is one round trip per batch instead of a pipelined window.
//
// # The high watermark (Config.Watermark)
//
// With site peers, a node forwards a partition only below its high
// watermark (sync/peer's Owner: what every in-sync replica holds), so the
// centre never holds a record the peers lack. Otherwise a node whose disk
// died and that restored itself from a peer's lagging replica would write
// new records at offsets the centre already holds, and resume would skip
// them as "stream ahead". Reads are cut at the watermark, and a partition
// held below the log's end waits for the watermark to move.
//
// # Forwarding leases and takeover (lease.go, lease_keeper.go, takeover.go)
//
// When site peers replicate each other (sync/peer), a node's partitions
// must reach the centre even if the node dies (G6), and never twice (G3).
// Leases decide which node forwards an origin node's partitions: one key
// per origin node in the KV bucket wire.LeaseBucket, taken by
// compare-and-set on its revision and expired by the bucket's MaxAge (the
// lease TTL) when its holder stops renewing.
//
//   - LeaseKeeper: a node holds its own lease while its uplink is up and
//     renews it every TTL/3. The origin has priority: a lease a peer took
//     while this node was away is taken back at once (Leases.Take).
//   - Takeover (one per peer whose replica this node keeps): once the peer
//     has been unreachable on the site network for TakeoverConfig.After and
//     its lease is free (expired or released), this node takes the lease
//     and forwards the replica with a fenced forwarder under the peer's
//     origin, from exactly where the stream ends. It stops when the peer
//     is reachable again, when the lease is lost (the peer took it back)
//     or cannot be renewed for 2/3 of the TTL, and releases the lease.
//
// A peer that is only cut off from this node keeps renewing its lease
// through its own uplink, so a split site does not make two forwarders.
// At most one node holds a lease at a time as the KV store sees it; a
// holder whose lease lapsed without it noticing (a frozen process, a lost
// renewal) can still have a batch in flight, and both forwarders of an
// origin are fenced (edge/node makes a replicating node's own forwarder
// fenced too), so that batch is refused rather than stored twice.
//
// # Failures
//
// The connection is a Link (link.go), a type of its own so that other
// components of the node (downlink, schema sync) can share it: Config.Link
// hands the forwarder a link its owner runs; without one, New makes the
// forwarder's own and Run runs it.
//
// A reconnect whose TLS handshake fails (a server certificate the node no
// longer trusts after a rotation) is reported with the TLS error and
// counted as a connect error, although nats.go tells no handler about it.
//
// The connection reconnects forever with exponential backoff and full jitter
// (Config.ReconnectMin/Max), also on wrong credentials, so a thousand sites
// coming back at once spread out. A missing stream ("run core, or set
// create_streams"), a full stream (discard: new), a permission denied, a
// timeout or a disconnect pauses the partition: logged once per change of
// kind, counted in outpost_upstream_publish_errors_total{kind}, reported in
// the status, retried with backoff, and forwarding resumes by itself once the
// cause is fixed. Records wait in the log: the forwarder holds each
// partition (an edge/log Hold named after Config.CursorName) at its first
// unacknowledged offset, so retention does not delete them.
//
// # Status
//
// While connected the forwarder publishes a wire.Status every
// Config.StatusInterval (and on every connect) with each partition's lag, so
// core's /v1/sites shows how far behind the node is. Lag returns the same for
// the edge's HTTP API, and the metrics outpost_upstream_lag_records,
// _lag_bytes and _oldest_unforwarded_age_seconds are computed at scrape time.
//
// # Lifecycle and locks
//
// New starts nothing (it reads and writes the origin pin); Run starts the
// connection (unless it is a shared Link), one goroutine per partition, the
// status and cursor loops, and returns when its context ends, after
// committing the cursors and closing its own connection. Locks are leaves:
// no goroutine holds two of Forwarder.mu, Link.mu, partition.mu and
// scheduler.mu at once.
//
// # Files
//
//	forwarder.go  Forwarder: New, Run, the partition scan and cursor loops
//	config.go     Config, Mode, TLSConfig, DefaultConfig, Validate
//	link.go       Link, Conn: the connection to the centre, reusable by other components
//	gate.go       the dialer that keeps a window of publishes on one connection
//	partition.go  one partition: its loop (resolve, pump, back off) and pause state
//	resume.go     decideResume: where to resume, pure
//	resolve.go    resolve: the I/O around decideResume (stream, provisioning, cursor, reports)
//	pump.go       pump: read ahead, publish in order, take acks, wait
//	window.go     window: the published, unacknowledged messages of one pump
//	resend.go     abort and the resends it arms, saved in the store
//	message.go    log records to NATS messages (record or batch)
//	sched.go      scheduler: bandwidth cap, in-flight budget, live first
//	status.go     Lag and the status reports to core
//	fenced.go     fenced forwarding: conditional atomic batches
//	lease.go      Leases: the forwarding lease bucket, Acquire, Take, Renew, Release
//	lease_keeper.go  LeaseKeeper: a node keeps its own lease; lease metrics
//	takeover.go   Takeover: forward a gone peer's replica under its lease
//	origin.go     the origin pin
//	source.go     what the forwarder needs of the log and the store
//	metrics.go    the forwarder's and the link's metrics
//	errors.go     sentinels, error kinds and the advice logged with them
package upstream
