// Package provision creates and maintains the JetStream streams of the
// upstream contract: one stream per log topic (wire.StreamName), holding
// wire.StreamSubjects, with the configured duplicate window, limits and
// replicas. The stream's shape (wire.TopicConfig, wire.StreamConfig and the
// metadata keys) belongs to the contract in core/wire, so that a forwarder
// allowed to create streams creates exactly what core would.
//
// Two paths lead to a stream:
//   - Topics listed in Config.Topics are created or updated at start
//     (EnsureConfigured); the config is the source of truth for them.
//   - Edges ask for a topic's stream on wire.ProvisionSubject (Handle). A
//     configured topic is ensured with its config; an unlisted one is
//     created with Config.Defaults if Config.AutoProvision is on and
//     refused otherwise. An existing unlisted stream is left as it is (an
//     operator may have tuned it), but its subjects are checked.
//
// Streams are file-backed, limits-based, and have AllowDirect off so that
// wire.LastOffset is always answered by the stream leader (G3).
//
// EnsureStatusStream provisions one more stream, core's own: the status
// stream (wire.StatusStreamName), which keeps the last status report of
// every edge node so core's sites view survives a restart (package
// sites). Its filter never overlaps a topic's, and its name is no topic's.
//
// The package keeps no state: everything lives in JetStream, so several
// core instances can provision side by side (creation is idempotent; a
// race between two creators ends with both seeing the stream).
package provision
