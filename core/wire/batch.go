package wire

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// BatchFormatV1 is the HeaderBatch value of the batch format this package
// writes: the payload is a MessagePack array of Record maps (record.go, keys
// o t k v h mt s), offsets strictly increasing. A consumer that meets an
// unknown format refuses the message instead of guessing.
const BatchFormatV1 = "msgp1"

// EncodeBatch returns the batch payload of recs. recs must be non-empty with
// non-negative, strictly increasing offsets (gaps are allowed: a retention
// policy may have dropped records before they were forwarded).
func EncodeBatch(recs []Record) ([]byte, error) {
	return AppendBatch(nil, recs)
}

// AppendBatch appends the batch payload of recs to dst; see EncodeBatch.
func AppendBatch(dst []byte, recs []Record) ([]byte, error) {
	if err := checkBatch(recs); err != nil {
		return dst, err
	}
	size := msgp.ArrayHeaderSize
	for i := range recs {
		size += recs[i].Msgsize()
	}
	if cap(dst)-len(dst) < size {
		nb := make([]byte, len(dst), len(dst)+size)
		copy(nb, dst)
		dst = nb
	}
	dst = msgp.AppendArrayHeader(dst, uint32(len(recs)))
	for i := range recs {
		var err error
		if dst, err = recs[i].MarshalMsg(dst); err != nil {
			return dst, fmt.Errorf("wire: encode batch record %d: %w", recs[i].Offset, err)
		}
	}
	return dst, nil
}

func checkBatch(recs []Record) error {
	if len(recs) == 0 {
		return fmt.Errorf("%w: empty batch", ErrBadMessage)
	}
	prev := int64(-1)
	for i := range recs {
		r := &recs[i]
		if r.Offset <= prev {
			return fmt.Errorf("%w: batch offset %d follows %d; offsets must be non-negative and strictly increasing", ErrBadMessage, r.Offset, prev)
		}
		if len(r.Headers) > MaxHeaders {
			return fmt.Errorf("%w: record %d has %d headers, at most %d", ErrBadMessage, r.Offset, len(r.Headers), MaxHeaders)
		}
		prev = r.Offset
	}
	return nil
}

// DecodeBatch decodes a BatchFormatV1 payload. It never panics and never
// allocates much more than len(b) on hostile input; a successful result is
// non-empty with strictly increasing offsets and no trailing bytes. Keys and
// values (of records and of their headers) alias b rather than copy it, so
// b must not be modified while the records are in use.
func DecodeBatch(b []byte) ([]Record, error) {
	n, rest, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: batch header: %w", ErrBadMessage, err)
	}
	// Every record takes at least one byte, so a larger count is a lie;
	// checking first keeps a forged count from sizing the allocation.
	if n == 0 || uint64(n) > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: batch claims %d records in %d bytes", ErrBadMessage, n, len(rest))
	}
	recs := make([]Record, n)
	for i := range recs {
		if rest, err = recs[i].UnmarshalMsg(rest); err != nil {
			return nil, fmt.Errorf("%w: batch record #%d: %w", ErrBadMessage, i, err)
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last batch record", ErrBadMessage, len(rest))
	}
	if err := checkBatch(recs); err != nil {
		return nil, err
	}
	return recs, nil
}
