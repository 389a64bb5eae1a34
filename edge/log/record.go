package log

//go:generate go run github.com/tinylib/msgp@v1.6.5 -file record.go -o record_gen.go

// Header is one record header. Headers are an ordered list, not a map, so that
// a record encodes to the same bytes every time (replication and forwarding
// ship batches as stored) and duplicate keys survive a round trip.
type Header struct {
	Key   string `msg:"k"`
	Value []byte `msg:"v"`
}

// Record is the unit of the log. Offset is assigned by Append and ignored on
// input; Timestamp is Unix nanoseconds (the device's or the node's clock,
// whichever the caller chose).
type Record struct {
	Offset    int64    `msg:"-"`
	Timestamp int64    `msg:"t"`
	Key       []byte   `msg:"key"`
	Value     []byte   `msg:"val"`
	Headers   []Header `msg:"h"`
}

// Header returns the value of the first header named key, and whether there
// was one.
func (r *Record) Header(key string) ([]byte, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// Batch is what one frame of a segment holds: consecutive records starting at
// BaseOffset. Record offsets are implicit (BaseOffset + i), which is how a
// decoded batch proves it sits where the reader expected it.
type Batch struct {
	BaseOffset   int64    `msg:"b"`
	MaxTimestamp int64    `msg:"mt"`
	Records      []Record `msg:"r"`
}
