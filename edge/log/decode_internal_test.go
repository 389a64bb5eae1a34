package log

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
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
		// scanBatch (what a replica checks its owner's batches with) must
		// accept exactly what decodeBatch decodes.
		base, _, count, srest, serr := scanBatch(data)
		if (err == nil) != (serr == nil) {
			t.Fatalf("decodeBatch: %v, scanBatch: %v", err, serr)
		}
		if err != nil {
			return
		}
		if base != b.BaseOffset || count != len(b.Records) || len(srest) != len(rest) {
			t.Fatalf("scanBatch: base %d, %d records, %d left; decodeBatch: %d, %d, %d", base, count, len(srest), b.BaseOffset, len(b.Records), len(rest))
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

// TestRollResealsFrame: a frame that does not fit the active segment is
// written to the next one; its header must carry that segment's durable
// position (its header's end), not the old segment's, or recovery could
// take a torn tail of the new segment for damage to durable data.
func TestRollResealsFrame(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Config{Sync: SyncAlways, SegmentMaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.CreateTopic("t", TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := l.Partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	// One request of several batches, 12 KiB each: the segment rolls in
	// the middle of the round.
	var bs []RawBatch
	for i := range 6 {
		payload, err := (&Batch{BaseOffset: int64(i), MaxTimestamp: 1, Records: []Record{{Timestamp: 1, Value: make([]byte, 12<<10)}}}).MarshalMsg(nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseBatch(payload)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	// The first batch alone: synced, so the segment's durable position
	// moves past its header.
	if err := p.AppendBatchesAt(t.Context(), 0, bs[:1]); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendBatchesAt(t.Context(), 1, bs[1:]); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	segs := append([]*segment(nil), p.segments...)
	p.mu.Unlock()
	if len(segs) < 2 {
		t.Fatalf("%d segments, want a roll", len(segs))
	}
	for _, s := range segs[1:] {
		data, err := os.ReadFile(s.logPath)
		if err != nil {
			t.Fatal(err)
		}
		_, _, durable, err := decodeFrame(data[segmentHeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		if durable != segmentHeaderSize {
			t.Errorf("%s: first frame records durable position %d, want %d", s.logPath, durable, segmentHeaderSize)
		}
	}
}

// TestFramePayloadShortV1: an OPB1 frame (12-byte header) shorter than an
// OPB2 header must be read by its own header size. framePayload sliced it
// at OPB2's 20 bytes first and panicked on such a frame — on disk data,
// in the owner's ReadBatches.
func TestFramePayloadShortV1(t *testing.T) {
	for size := 1; size <= 10; size++ {
		payload := bytes.Repeat([]byte{0xc0}, size)
		frame := binary.BigEndian.AppendUint32(nil, frameMagicV1)
		frame = binary.BigEndian.AppendUint32(frame, uint32(size))
		frame = binary.BigEndian.AppendUint32(frame, crc32.Checksum(payload, castagnoli))
		frame = append(frame, payload...)
		got, n, err := framePayload(frame)
		if err != nil || n != len(frame) || !bytes.Equal(got, payload) {
			t.Fatalf("%d-byte OPB1 frame: payload %x, length %d, %v", size, got, n, err)
		}
	}
}
