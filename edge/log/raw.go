package log

import (
	"context"
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// RawBatch is one batch as a segment stores it: its msgp payload
// (FORMAT.md), with the offsets it holds, so that it can be copied
// without decoding its records — a replica stores its owner's batches as
// they came (sync/peer), which costs a fraction of decoding and
// re-encoding every record. Only ParseBatch, ReadBatches and From make
// one: its fields always describe its payload.
type RawBatch struct {
	base    int64
	count   int
	maxTs   int64
	payload []byte
}

// Base returns the offset of the batch's first record.
func (b RawBatch) Base() int64 { return b.base }

// Count returns the number of records in the batch.
func (b RawBatch) Count() int { return b.count }

// End returns the offset after the batch's last record.
func (b RawBatch) End() int64 { return b.base + int64(b.count) }

// Payload returns the batch's msgp encoding. It aliases the buffer the
// batch was read or parsed from.
func (b RawBatch) Payload() []byte { return b.payload }

// ParseBatch checks that payload is one well-formed batch — every record
// decodes, nothing trails — and returns it. It copies nothing: the batch
// aliases payload. Use it on batches from the network before
// AppendBatchesAt.
func ParseBatch(payload []byte) (RawBatch, error) {
	base, maxTs, count, rest, err := scanBatch(payload)
	if err == nil && (len(rest) != 0 || count == 0 || base < 0) {
		err = fmt.Errorf("%d trailing bytes, %d records, base %d", len(rest), count, base)
	}
	if err != nil {
		return RawBatch{}, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return RawBatch{base: base, count: count, maxTs: maxTs, payload: payload}, nil
}

// Records decodes the batch. The records alias its payload.
func (b RawBatch) Records() ([]Record, error) {
	d, err := decodePayload(b.payload)
	if err == nil && (d.BaseOffset != b.base || len(d.Records) != b.count) {
		err = fmt.Errorf("%w: holds [%d,+%d), parsed as [%d,+%d)", ErrDecode, d.BaseOffset, len(d.Records), b.base, b.count)
	}
	if err != nil {
		return nil, fmt.Errorf("batch at offset %d: %w", b.base, err)
	}
	return d.Records, nil
}

// From returns the batch's records from offset on (offset inside the
// batch), re-encoded as a batch of their own; the batch itself when
// offset is its base.
func (b RawBatch) From(offset int64) (RawBatch, error) {
	if offset == b.base {
		return b, nil
	}
	if offset < b.base || offset >= b.End() {
		return RawBatch{}, fmt.Errorf("%w: offset %d outside the batch [%d, %d)", ErrOffsetOutOfRange, offset, b.base, b.End())
	}
	recs, err := b.Records()
	if err != nil {
		return RawBatch{}, err
	}
	nb := Batch{BaseOffset: offset, MaxTimestamp: minTs, Records: recs[offset-b.base:]}
	for _, r := range nb.Records {
		nb.MaxTimestamp = max(nb.MaxTimestamp, r.Timestamp)
	}
	payload, err := nb.MarshalMsg(nil)
	if err != nil {
		return RawBatch{}, fmt.Errorf("log: encode batch: %w", err)
	}
	return RawBatch{base: offset, count: len(nb.Records), maxTs: nb.MaxTimestamp, payload: payload}, nil
}

// ReadBatches is Read for copiers: it returns the stored batches holding
// offsets from `from` on, whole and unchanged (checksums checked, records
// not decoded), so the first may begin before from (From cuts it), up to
// about maxBytes of payload but at least one batch if any is readable. As
// Read: under SyncAlways only durable batches; empty at the end;
// ErrOffsetOutOfRange outside the partition. Payloads alias read buffers
// of about 64 KiB.
func (p *Partition) ReadBatches(ctx context.Context, from int64, maxBytes int) ([]RawBatch, error) {
	var out []RawBatch
	err := p.read(ctx, from, func(s *segment, end int64) error {
		var err error
		out, err = p.readSegmentBatches(s, from, end, maxBytes)
		return err
	})
	return out, err
}

func (p *Partition) readSegmentBatches(s *segment, from, end int64, maxBytes int) ([]RawBatch, error) {
	f, pos, limit, rb, err := p.scanFrom(s, from, maxBytes)
	if err != nil {
		return nil, err
	}
	var out []RawBatch
	bytes := 0
	for pos < limit && bytes < maxBytes {
		frame, err := p.frameBytesAt(f, s, pos, limit, &rb)
		if err != nil {
			return out, err
		}
		payload, n, err := framePayload(frame)
		if err != nil {
			return out, p.readErr(s, pos, err)
		}
		base, maxTs, count, _, err := walkBatch(payload, true, skipRecords)
		if err == nil && (count == 0 || base < 0) {
			err = fmt.Errorf("%d records, base %d", count, base)
		}
		if err != nil {
			return out, p.readErr(s, pos, fmt.Errorf("%w: %v", ErrDecode, err))
		}
		b := RawBatch{base: base, count: count, maxTs: maxTs, payload: payload}
		if b.End() <= from {
			pos += int64(n)
			continue
		}
		// Frames are published whole, so a batch is either below the end
		// readers may see or at or beyond it.
		if b.End() > end || len(out) > 0 && bytes+len(payload) > maxBytes {
			break
		}
		want := from
		if len(out) > 0 {
			want = out[len(out)-1].End()
		}
		if base > want || len(out) > 0 && base != want {
			return out, &CorruptionError{Segment: s.logPath, Pos: pos, Err: fmt.Errorf("%w: holds %d, expected %d", ErrBadOffset, base, want)}
		}
		out = append(out, b)
		bytes += len(payload)
		pos += int64(n)
	}
	return out, nil
}

func skipRecords(cnt uint32, bts []byte) ([]byte, error) {
	var err error
	for range cnt {
		if bts, err = msgp.Skip(bts); err != nil {
			return nil, err
		}
	}
	return bts, nil
}

// AppendBatchesAt is AppendAt for batches: it appends batches (from
// ParseBatch or ReadBatches), which must continue each other from offset
// first, the partition's end. Each is stored as one frame holding its
// payload unchanged. It returns after they are durable under the sync
// policy; ErrNotContiguous without writing when they do not continue the
// partition; ErrBatchTooLarge when one exceeds Config.MaxBatchBytes (copy
// its records with AppendAt then). The rules of AppendAt apply: one writer
// per replica partition, and ctx should not be cancelled while it runs.
func (p *Partition) AppendBatchesAt(ctx context.Context, first int64, batches []RawBatch) error {
	if len(batches) == 0 {
		return ErrEmptyBatch
	}
	next, size := first, 0
	for _, b := range batches {
		if b.base != next || b.count == 0 {
			return fmt.Errorf("%w: %s/%d: batch at %d, expected %d", ErrNotContiguous, p.topic, p.id, b.base, next)
		}
		n := len(b.payload) + frameHeaderSize
		if n > p.log.cfg.MaxBatchBytes {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrBatchTooLarge, n, p.log.cfg.MaxBatchBytes)
		}
		size += n
		next = b.End()
	}
	if end := p.EndOffset(); end != first {
		return fmt.Errorf("%w: %s/%d: append at %d, end is %d", ErrNotContiguous, p.topic, p.id, first, end)
	}
	ch := make(chan error, 1)
	req := &appendReq{raw: batches, count: int(next - first), size: size, done: func(_ int64, err error) { ch <- err }}
	if err := p.enqueue(ctx, req); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
