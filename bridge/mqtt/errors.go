package mqtt

import "errors"

var (
	// ErrAckTimeout: a publish waited longer than the ack timeout for its
	// commit or for room in its session's queue.
	ErrAckTimeout = errors.New("mqtt: publish not durable within the ack timeout")
	// ErrShuttingDown: the node is draining and takes no new publishes.
	ErrShuttingDown = errors.New("mqtt: node is shutting down")
	// ErrPayloadTooLarge: a payload exceeds Config.MaxPayloadBytes.
	ErrPayloadTooLarge = errors.New("mqtt: payload too large")
)
