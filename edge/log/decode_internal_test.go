package log

import (
	"bytes"
	"testing"
)

// FuzzDecodePayload fuzzes the batch decoder behind the CRC, which random
// frames almost never reach: it must never panic nor allocate beyond the
// input's size, and must agree with the generated decoder.
func FuzzDecodePayload(f *testing.F) {
	good, _ := (&Batch{BaseOffset: 3, MaxTimestamp: 4, Records: []Record{{Timestamp: 4, Key: []byte("k"), Value: []byte("v"), Headers: []Header{{Key: "a", Value: []byte("b")}}}}}).MarshalMsg(nil)
	f.Add(good)
	f.Add([]byte{0x81, 0xa1, 'r', 0xdd, 0xff, 0xff, 0xff, 0xff}) // array of 4 billion records
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, rest, err := decodeBatch(data)
		if err != nil {
			return
		}
		var g Batch
		grest, gerr := g.UnmarshalMsg(data)
		if gerr != nil {
			return // the generated decoder is stricter on types in places
		}
		if len(rest) != len(grest) || b.BaseOffset != g.BaseOffset || len(b.Records) != len(g.Records) {
			t.Fatalf("decoders disagree")
		}
		for i := range b.Records {
			if !bytes.Equal(b.Records[i].Value, g.Records[i].Value) || !bytes.Equal(b.Records[i].Key, g.Records[i].Key) {
				t.Fatalf("record %d differs", i)
			}
		}
	})
}
