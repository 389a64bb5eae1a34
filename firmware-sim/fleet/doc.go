// Package fleet runs simulated devices against an MQTT broker and counts
// what happened: the behaviour model of firmware-sim.
//
// Each device is one goroutine owning one mqttc.Client (one MQTT
// connection and session). It samples readings on a schedule (rate with
// jitter, bursts) or as fast as its in-flight window allows, numbers them
// with a per-device sequence starting at 0 (see package payload), keeps
// them in a bounded backlog while it cannot send, and behaves like real
// firmware: reconnects with exponential backoff and jitter, resends
// unacknowledged messages on a persistent session, goes offline for a
// while, runs a skewed clock, and sends a share of bad payloads on demand.
//
// Guarantees: a message counted as Sent with QoS 1/2 is either counted as
// Acked (or Refused, when the broker's reason code is >= 0x80) or reported
// as Missing in the Summary; a reading dropped from a full backlog is
// counted as Dropped and its sequence number is never sent, so verify
// reports it as a gap that the Summary explains.
//
// Lifecycle: New validates and builds; Run blocks until every device has
// finished (count reached or Duration over, then acks drained) or ctx is
// done, and owns all goroutines it starts. Snapshot may be called while
// Run runs.
package fleet
