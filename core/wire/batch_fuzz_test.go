package wire_test

import (
	"math/rand/v2"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/outpost-edge/outpost/core/wire"
)

// FuzzDecodeBatch feeds arbitrary bytes to the decoder: it must never panic,
// and whatever it accepts must re-encode to a payload that decodes to the
// same records. A seed-driven branch also checks decode(encode(x)) == x for
// generated batches.
func FuzzDecodeBatch(f *testing.F) {
	good, _ := wire.EncodeBatch([]wire.Record{weirdRecord(1), {Offset: 2}, {Offset: 10, Key: []byte("k")}})
	f.Add(good, uint64(0))
	f.Add(good[:len(good)/2], uint64(1))
	f.Add([]byte{}, uint64(2))
	f.Add([]byte{0x90}, uint64(3))                         // empty array
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, uint64(4)) // array claiming 4G records
	f.Add([]byte{0x91, 0x81, 0xa1, 'h', 0xdd, 0xff, 0xff, 0xff, 0xff}, uint64(5))
	f.Add(msgp.AppendArrayHeader(nil, 1), uint64(6))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		if recs, err := wire.DecodeBatch(data); err == nil {
			again, err := wire.EncodeBatch(recs)
			if err != nil {
				t.Fatalf("decoded batch does not re-encode: %v", err)
			}
			recs2, err := wire.DecodeBatch(again)
			if err != nil || len(recs2) != len(recs) {
				t.Fatalf("re-encoded batch does not decode: %v", err)
			}
			for i := range recs {
				if err := sameRecord(recs[i], recs2[i]); err != nil {
					t.Fatal(err)
				}
			}
		}
		rng := rand.New(rand.NewPCG(seed, uint64(len(data))))
		recs := randomRecords(rng, 1+rng.IntN(8))
		enc, err := wire.EncodeBatch(recs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wire.DecodeBatch(enc)
		if err != nil || len(got) != len(recs) {
			t.Fatalf("decode(encode(x)): %v", err)
		}
		for i := range recs {
			if err := sameRecord(recs[i], got[i]); err != nil {
				t.Fatal(err)
			}
		}
	})
}
