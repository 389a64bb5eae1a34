// Package downlink is the edge half of the downlink (core/wire
// PROTOCOL.md §9): it takes the site's commands from the centre whenever
// the uplink is up, makes each durable in the node's log before it
// acknowledges it to the centre, keeps them queued per device in order,
// and writes every status change as a record of log topic
// wire.CommandStatusTopic, which the forwarder (sync/upstream) sends to
// the centre exactly once like any record. Delivery to the device is
// bridge/deliver's, through the Store's Next, Finish and Answer.
//
// # On disk
//
//   - log topic wire.CommandLogTopic (_commands), one partition: every
//     command taken, as JSON (wire.Command), key = device. Retention keeps
//     every command not final yet: the Store holds the partition (Hold
//     named HolderName) at its cursor.
//   - log topic wire.CommandStatusTopic (_command-status), one partition:
//     status records (wire.CommandStatusRecord), key = device.
//   - metadata store: cursor HolderName on _commands/0 (the lowest offset
//     of a command not final) and bucket downlink.done (id → final status
//     of commands above the cursor).
//
// Both topics are forwarded upstream like every log topic: the stream of
// _commands is the centre's record of what each edge took.
//
// # Guarantees
//
//   - A command is acknowledged to the centre only after it (or its
//     rejection or expiry) is durable in the log under the node's sync
//     policy; a redelivery (lost ack, node killed) is dropped by id.
//   - A status record is durable before the queue moves on; a node killed
//     between a delivery and its record delivers again after restart
//     (at-least-once: devices drop duplicates by the command id) and
//     reports again (the centre's fold is idempotent).
//   - A command whose time to live has passed is never handed out (Next).
//
// Bounds: MaxPerDevice and MaxQueued commands pending (beyond: rejected,
// queue_full); ids remembered for dedup: 100000.
//
// Lock order: Store.mu only; log and metadata I/O outside it except the
// cursor update.
package downlink
