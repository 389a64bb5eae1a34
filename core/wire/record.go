package wire

//go:generate go run github.com/tinylib/msgp@v1.6.5 -file record.go -o record_gen.go

// Header is one user header of a record: an ordered list of (key, value), as
// in the edge log, so duplicate keys and their order survive the trip.
type Header struct {
	Key   string `msg:"k"`
	Value []byte `msg:"v,zerocopy"`
}

// Record is one log record as it travels upstream. A nil and an empty Key or
// Value are the same thing on the wire and decode as either.
type Record struct {
	// Offset is the record's offset in its origin partition.
	Offset int64 `msg:"o"`
	// Timestamp is the device (or node) timestamp, Unix nanoseconds.
	Timestamp int64 `msg:"t"`
	// Key is the partitioning key (by default the device).
	Key []byte `msg:"k,omitempty,zerocopy"`
	// Value is the payload as the device sent it.
	Value []byte `msg:"v,zerocopy"`
	// Headers are the record's user headers, in order.
	Headers []Header `msg:"h,omitempty,limit=65536"` // limit: see MaxHeaders
	// MQTTTopic is the MQTT topic the record was published on, "" if none.
	MQTTTopic string `msg:"mt,omitempty"`
	// SchemaID is the registry ID of the schema the payload was checked
	// against; 0 means none (registry IDs start at 1).
	SchemaID int64 `msg:"s,omitempty"`
}
