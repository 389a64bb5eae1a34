// Package peer replicates partitions between the edge nodes of a site (G6).
// Not built yet: see the issue tracker.
package peer
