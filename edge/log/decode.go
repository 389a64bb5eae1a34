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
	n, bts, err := msgp.ReadMapHeaderBytes(bts)
	if err != nil {
		return nil, nil, err
	}
	b := &Batch{}
	for ; n > 0; n-- {
		var field []byte
		if field, bts, err = msgp.ReadMapKeyZC(bts); err != nil {
			return nil, nil, err
		}
		switch string(field) {
		case "b":
			b.BaseOffset, bts, err = msgp.ReadInt64Bytes(bts)
		case "mt":
			b.MaxTimestamp, bts, err = msgp.ReadInt64Bytes(bts)
		case "r":
			var cnt uint32
			if cnt, bts, err = msgp.ReadArrayHeaderBytes(bts); err != nil {
				return nil, nil, err
			}
			if int64(cnt) > int64(len(bts)) {
				return nil, nil, fmt.Errorf("records: %w", errCount)
			}
			b.Records = make([]Record, cnt)
			for i := range b.Records {
				if bts, err = decodeRecord(&b.Records[i], bts); err != nil {
					return nil, nil, fmt.Errorf("record %d: %w", i, err)
				}
			}
		default:
			bts, err = msgp.Skip(bts) // a field from a newer minor format
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return b, bts, nil
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
			r.Headers = make([]Header, cnt)
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
