package log

import (
	"errors"
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

var errCount = errors.New("element count exceeds the bytes left")

// decodeBatch decodes a batch payload without copying: the records' keys,
// values and header values alias bts. It is the hot path of every read, and
// it checks every announced count against the bytes left before allocating,
// so a damaged or hostile payload cannot make it allocate more than the
// payload's size (the generated UnmarshalMsg trusts the counts).
func decodeBatch(bts []byte) (*Batch, []byte, error) {
	b := &Batch{}
	var err error
	b.BaseOffset, b.MaxTimestamp, _, bts, err = walkBatch(bts, false, func(cnt uint32, bts []byte) ([]byte, error) {
		b.Records = make([]Record, cnt)
		var err error
		for i := range b.Records {
			if bts, err = decodeRecord(&b.Records[i], bts); err != nil {
				return nil, fmt.Errorf("record %d: %w", i, err)
			}
		}
		return bts, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return b, bts, nil
}

// scanBatch checks a batch payload's structure, every record included,
// and returns its base offset, max timestamp and record count. It keeps
// nothing, so it allocates at most one record's headers: a replica checks
// what its owner sent without decoding it (sync/peer).
func scanBatch(bts []byte) (base, maxTs int64, count int, rest []byte, err error) {
	var r Record
	return walkBatch(bts, false, func(cnt uint32, bts []byte) ([]byte, error) {
		var err error
		for i := range cnt {
			if bts, err = decodeRecord(&r, bts); err != nil {
				return nil, fmt.Errorf("record %d: %w", i, err)
			}
		}
		return bts, nil
	})
}

// walkBatch walks a batch payload's map and hands the records array (its
// announced count, checked against the bytes left, and the bytes from its
// first record) to records, which returns the bytes after the last one.
// With countOnly it stops at the records array when it is the map's last
// field (as Batch.MarshalMsg writes it), without walking the records: rest
// is then nil. A frame whose checksum matched needs no more to be copied.
func walkBatch(bts []byte, countOnly bool, records func(cnt uint32, bts []byte) ([]byte, error)) (base, maxTs int64, count int, rest []byte, err error) {
	n, bts, err := msgp.ReadMapHeaderBytes(bts)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	for ; n > 0; n-- {
		var field []byte
		if field, bts, err = msgp.ReadMapKeyZC(bts); err != nil {
			return 0, 0, 0, nil, err
		}
		switch string(field) {
		case "b":
			base, bts, err = msgp.ReadInt64Bytes(bts)
		case "mt":
			maxTs, bts, err = msgp.ReadInt64Bytes(bts)
		case "r":
			var cnt uint32
			if cnt, bts, err = msgp.ReadArrayHeaderBytes(bts); err != nil {
				return 0, 0, 0, nil, err
			}
			if int64(cnt) > int64(len(bts)) {
				return 0, 0, 0, nil, fmt.Errorf("records: %w", errCount)
			}
			count = int(cnt)
			if countOnly && n == 1 {
				return base, maxTs, count, nil, nil
			}
			bts, err = records(cnt, bts)
		default:
			bts, err = msgp.Skip(bts) // a field from a newer minor format
		}
		if err != nil {
			return 0, 0, 0, nil, err
		}
	}
	return base, maxTs, count, bts, nil
}

func decodeRecord(r *Record, bts []byte) ([]byte, error) {
	n, bts, err := msgp.ReadMapHeaderBytes(bts)
	if err != nil {
		return nil, err
	}
	for ; n > 0; n-- {
		var field []byte
		if field, bts, err = msgp.ReadMapKeyZC(bts); err != nil {
			return nil, err
		}
		switch string(field) {
		case "t":
			r.Timestamp, bts, err = msgp.ReadInt64Bytes(bts)
		case "key":
			r.Key, bts, err = msgp.ReadBytesZC(bts)
		case "val":
			r.Value, bts, err = msgp.ReadBytesZC(bts)
		case "h":
			var cnt uint32
			if cnt, bts, err = msgp.ReadArrayHeaderBytes(bts); err != nil {
				return nil, err
			}
			if int64(cnt) > int64(len(bts)) {
				return nil, fmt.Errorf("headers: %w", errCount)
			}
			if cap(r.Headers) >= int(cnt) && cnt > 0 {
				r.Headers = r.Headers[:cnt] // scanBatch's one record, reused
			} else {
				r.Headers = make([]Header, cnt)
			}
			for i := range r.Headers {
				if bts, err = decodeHeader(&r.Headers[i], bts); err != nil {
					return nil, err
				}
			}
		default:
			bts, err = msgp.Skip(bts)
		}
		if err != nil {
			return nil, err
		}
	}
	return bts, nil
}

func decodeHeader(h *Header, bts []byte) ([]byte, error) {
	n, bts, err := msgp.ReadMapHeaderBytes(bts)
	if err != nil {
		return nil, err
	}
	for ; n > 0; n-- {
		var field []byte
		if field, bts, err = msgp.ReadMapKeyZC(bts); err != nil {
			return nil, err
		}
		switch string(field) {
		case "k":
			var k []byte
			k, bts, err = msgp.ReadStringZC(bts)
			h.Key = string(k)
		case "v":
			h.Value, bts, err = msgp.ReadBytesZC(bts)
		default:
			bts, err = msgp.Skip(bts)
		}
		if err != nil {
			return nil, err
		}
	}
	return bts, nil
}
