// Package verify proves no loss and no duplicates: it checks each device's
// sequence numbers (package payload) for gaps and duplicates.
//
// A Checker is fed (device id, payload) pairs, or Records that also carry a
// log partition and offset, from any Source, and reports per device the
// missing ranges, duplicate sequence numbers and readings that arrived out
// of order, plus payloads that did not decode. When records carry offsets
// it also checks that each partition's offsets are contiguous (G2).
//
// Memory per device is proportional to the number of gaps, not to the
// number of readings: seen sequence numbers are kept as merged ranges.
//
// Sources here: an MQTT subscription (MQTTSource), a file of JSON lines
// (FileSource) and the edge HTTP API's record listing (HTTPSource). A later
// source, such as the central stream, only has to implement Source.
//
// Checker is safe for concurrent use.
package verify
