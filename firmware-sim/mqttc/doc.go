// Package mqttc is a small MQTT 3.1.1 and 5.0 client written for load
// generation and end-to-end checks, not for general use.
//
// It exists because the paho clients hide the two things a load generator
// has to control: an in-flight window per connection (many QoS 1/2
// publishes pipelined, like a gateway) and the time between writing one
// PUBLISH and reading its PUBACK/PUBCOMP. Here every in-flight message
// carries its write time and every acknowledgement is reported with its
// latency and reason code.
//
// A Client is one device session. Its in-flight messages (the session
// state of [MQTT-4.4.0-1]) live in the Client, not in the connection, so
// they survive a dropped connection: Connect resends them, PUBLISH with DUP
// set and PUBREL for QoS 2 messages already PUBRECed, in their original
// order [MQTT-4.6.0-1], before any new publish.
//
// Accounting: a QoS 1/2 message taken by Publish leaves the in-flight count
// exactly once, after its OnAck (acknowledged, or refused with a reason of
// 0x80 or more) has returned, so InFlight and WaitIdle never run ahead of
// the caller's own ack count, and Stats always satisfies
// Sent == Acked + Refused + InFlight.
//
// Goroutines: Connect starts a reader and a keepalive pinger per
// connection; both end when the connection closes, and Close waits for
// them. Callbacks run on the reader goroutine and must not block.
//
// Lock order: Client.mu before Client.wmu.
package mqttc
