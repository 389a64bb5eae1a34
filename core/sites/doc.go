// Package sites keeps core's view of the edge: every site and node that has
// reported, when it last did, and per-partition forwarding lag as the edge
// reports it (wire.Status on wire.StatusSubscription).
//
// The view is in memory and derived: it is rebuilt from the next reports
// after a restart (edges report every few seconds while connected), so core
// keeps no state outside JetStream and several core instances each build
// the same view. Until a node reports again after a core restart, it is
// simply absent.
//
// Memory is bounded: at most Config.MaxNodes nodes (reports from further
// nodes are dropped and counted) and at most wire.MaxStatusPartitions
// partitions per node; nodes silent for Config.ForgetAfter are dropped.
//
// Lock order: Registry.mu only; no calls out while holding it.
package sites
