// Package meta is the edge node's metadata store in bbolt: topic configs,
// cursors (consumer and forwarder positions), node identity and the schema
// cache. The log is the source of truth; metadata that points past a
// recovered log end is clamped to it at open.
package meta
