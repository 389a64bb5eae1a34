package mqttc

import (
	"errors"
	"fmt"
)

// Errors returned by Client methods.
var (
	// ErrNotConnected means there is no live connection; call Connect.
	ErrNotConnected = errors.New("mqttc: not connected")
	// ErrClosed means Close was called.
	ErrClosed = errors.New("mqttc: client closed")
	// ErrProtocol means the broker sent something this client cannot parse.
	ErrProtocol = errors.New("mqttc: protocol error")
	// ErrPacketTooLarge means a packet exceeded MaxPacketBytes.
	ErrPacketTooLarge = errors.New("mqttc: packet too large")
)

// ConnectError is a CONNACK with a failure code.
type ConnectError struct {
	// Reason is the MQTT 5 reason code or, for 3.1.1, the return code.
	Reason byte
	// Version is the protocol version the connection used (3 or 5).
	Version int
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("mqttc: connection refused: %s", ConnackReasonName(e.Version, e.Reason))
}

// DisconnectError reports a DISCONNECT the broker sent (MQTT 5).
type DisconnectError struct {
	// Reason is the broker's reason code.
	Reason byte
}

func (e *DisconnectError) Error() string {
	return fmt.Sprintf("mqttc: disconnected by broker: %s", ReasonName(e.Reason))
}
