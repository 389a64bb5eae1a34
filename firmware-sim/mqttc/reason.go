package mqttc

import "fmt"

var reasonNames = map[byte]string{
	0x00: "success",
	0x01: "granted qos 1",
	0x02: "granted qos 2",
	0x04: "disconnect with will message",
	0x10: "no matching subscribers",
	0x80: "unspecified error",
	0x81: "malformed packet",
	0x82: "protocol error",
	0x83: "implementation specific error",
	0x84: "unsupported protocol version",
	0x85: "client identifier not valid",
	0x86: "bad user name or password",
	0x87: "not authorized",
	0x88: "server unavailable",
	0x89: "server busy",
	0x8A: "banned",
	0x8B: "server shutting down",
	0x8C: "bad authentication method",
	0x8D: "keep alive timeout",
	0x8E: "session taken over",
	0x8F: "topic filter invalid",
	0x90: "topic name invalid",
	0x91: "packet identifier in use",
	0x92: "packet identifier not found",
	0x93: "receive maximum exceeded",
	0x94: "topic alias invalid",
	0x95: "packet too large",
	0x96: "message rate too high",
	0x97: "quota exceeded",
	0x98: "administrative action",
	0x99: "payload format invalid",
	0x9A: "retain not supported",
	0x9B: "qos not supported",
	0x9C: "use another server",
	0x9D: "server moved",
	0x9E: "shared subscriptions not supported",
	0x9F: "connection rate exceeded",
	0xA0: "maximum connect time",
	0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}

var connack311Names = map[byte]string{
	0: "accepted",
	1: "unacceptable protocol version",
	2: "identifier rejected",
	3: "server unavailable",
	4: "bad user name or password",
	5: "not authorized",
}

// ReasonName names an MQTT 5 reason code as "0x97 quota exceeded".
func ReasonName(code byte) string {
	if n, ok := reasonNames[code]; ok {
		return fmt.Sprintf("0x%02X %s", code, n)
	}
	return fmt.Sprintf("0x%02X", code)
}

// ConnackReasonName names a CONNACK code for the given protocol version.
func ConnackReasonName(version int, code byte) string {
	if version == 5 {
		return ReasonName(code)
	}
	if n, ok := connack311Names[code]; ok {
		return fmt.Sprintf("%d %s", code, n)
	}
	return fmt.Sprintf("%d", code)
}
