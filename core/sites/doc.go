// Package sites keeps core's view of the edge: every site and node that has
// reported, when it last did, and per-partition forwarding lag as the edge
// reports it (wire.Status on wire.StatusSubscription).
//
// # Where the view lives
//
// Edges publish reports with a plain NATS publish every few seconds. Core
// keeps the last one of each node in JetStream: the status stream
// (wire.StatusStreamName, created by provision.EnsureStatusStream) captures
// the status subjects with one message per subject, so it holds exactly
// the latest report per node, expires reports after ForgetAfter (max age)
// and holds at most MaxNodes of them (least recently heard first out). The
// edges do nothing for it.
//
// The Registry is the in-memory copy core serves /v1/sites from. At start,
// Restore reads the last message per subject from the stream and takes
// each report with the time the stream stored it as its last contact
// (ReportAt), so a node whose uplink is down while core restarts is still
// listed, with its last contact and lag as they were. Live reports arrive
// on a core NATS subscription (HandleStatus), which works even while
// JetStream does not; restore and live reports may interleave in any
// order, because the view keeps the later of two reports of a node.
// Nothing but JetStream holds state: several core instances build the
// same view.
//
// Without the status stream (core may not create it on a NATS account it
// does not own) the view is in memory only: after a restart a node is
// absent until it reports again. core/service logs that with what to
// allow, and exports outpost_core_sites_persisted.
//
// # Bounds
//
// At most Config.MaxNodes nodes (reports from further nodes are dropped
// and counted) and at most wire.MaxStatusPartitions partitions per node;
// nodes silent for Config.ForgetAfter leave the view (at once for readers,
// from memory at the next sweep, at most a second later), and a restored
// report older than that is not taken. The stream holds one report per
// node, at most MaxNodes.
//
// Lock order: Registry.mu only; no calls out while holding it.
package sites
