// Package command is the centre's half of the downlink: applications send
// commands to one device at one site (HTTP, NATS request/reply, or the
// `core command send` CLI), core stores each in JetStream before
// answering, and the status records edges send upstream are folded into
// the command's state and history (core/wire/PROTOCOL.md §9).
//
// # Where commands live
//
// Stream wire.CommandStreamName (OUTPOST-COMMANDS) is a work queue with one
// subject per device (<prefix>.$cmd.<site>.<device>): a command stays in it
// until the site's edge, reading with durable consumer edge-<site>, has
// made it durable in its own log and acknowledged it. So an accepted
// command survives core and NATS restarts and site outages of any length
// (up to commands.max_ttl, the stream's max age). The KV bucket
// wire.CommandStateBucket (OUTPOST-COMMAND-STATE) holds each command's
// state under <site>.<device>.<id>: written with Create when accepted (so
// the same id twice is one command) and then only with compare-and-set
// through wire.CommandState.Apply, which moves a status only forward.
//
// # Guarantees
//
//   - Send answers queued only after the command is stored in the stream;
//     a refused command gets a rejected state with a reason (unknown_site:
//     no node of the site ever reported to core/sites; queue_full:
//     max_per_device (enforced by the stream, per subject) or max_per_site
//     (counted before publishing, so concurrent Sends may pass it by their
//     number); payload_too_large).
//   - Status records are acknowledged to JetStream only after they are
//     folded, and folding is idempotent: every status an edge reported
//     shows in the history once.
//   - A command queued in the centre past its time to live reads as
//     expired (reason ttl_centre); the edge never delivers it afterwards.
//
// The package keeps no state outside JetStream; several cores can run
// side by side (the fold consumer is shared, CAS settles races).
package command
