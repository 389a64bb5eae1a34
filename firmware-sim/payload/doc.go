// Package payload owns the wire format of the simulated devices' readings:
// what firmware-sim publishes and what verify decodes.
//
// A Reading carries four sensor values (temperature, humidity, vibration,
// battery), the device id, a per-device sequence number Seq and the device's
// own clock TS. Seq starts at 0 for each device and grows by one for every
// valid reading the device produces; verify uses it to find gaps and
// duplicates end to end. Deliberately bad payloads (AppendMalformed,
// AppendSchemaViolation) never carry a decodable Seq, so refusing them at
// the edge (G7) does not show up as a gap.
//
// Three encodings exist and Decode tells them apart by their first bytes:
//
//	JSON     {"device":"d-1","seq":0,"ts":1700000000000,"temperature":21.5,...}
//	msgpack  a map with the same keys
//	raw      "FSR1" | seq u64 BE | ts i64 BE | 4 x float32 BE | devLen u8 | dev | pad
//
// Every encoder can pad to a requested size (the "pad" field, or trailing
// zero bytes for raw); a size below the natural size is ignored. The package
// has no state; Model is the per-device generator and is not safe for
// concurrent use.
package payload
