// Package upstream forwards a node's log to the central NATS JetStream
// cluster, exactly once and in order per partition (G3), after outages of any
// length (G5).
package upstream
