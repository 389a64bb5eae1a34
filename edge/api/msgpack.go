package api

import (
	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/tinylib/msgp/msgp"
)

// appendRecordsMsgpack encodes a records answer as msgpack (doc.go,
// "Records"): the same fields as the JSON answer, with bytes as bin and the
// timestamp as Unix nanoseconds.
func appendRecordsMsgpack(b []byte, recs []elog.Record, next, start, end int64) []byte {
	b = msgp.AppendMapHeader(b, 4)
	b = msgp.AppendString(b, "records")
	b = msgp.AppendArrayHeader(b, uint32(len(recs)))
	for i := range recs {
		rec := &recs[i]
		b = msgp.AppendMapHeader(b, 5)
		b = msgp.AppendString(b, "offset")
		b = msgp.AppendInt64(b, rec.Offset)
		b = msgp.AppendString(b, "timestamp")
		b = msgp.AppendInt64(b, rec.Timestamp)
		b = msgp.AppendString(b, "key")
		b = msgp.AppendBytes(b, rec.Key)
		b = msgp.AppendString(b, "headers")
		b = appendHeaders(b, rec.Headers)
		b = msgp.AppendString(b, "value")
		b = msgp.AppendBytes(b, rec.Value)
	}
	b = msgp.AppendString(b, "next_offset")
	b = msgp.AppendInt64(b, next)
	b = msgp.AppendString(b, "start_offset")
	b = msgp.AppendInt64(b, start)
	b = msgp.AppendString(b, "end_offset")
	b = msgp.AppendInt64(b, end)
	return b
}

// appendHeaders writes headers as a map; of two headers with one name the
// first wins, as in the JSON answer.
func appendHeaders(b []byte, hs []elog.Header) []byte {
	keep := hs
	if hasDup(hs) {
		keep = make([]elog.Header, 0, len(hs))
		seen := make(map[string]bool, len(hs))
		for _, h := range hs {
			if !seen[h.Key] {
				seen[h.Key] = true
				keep = append(keep, h)
			}
		}
	}
	b = msgp.AppendMapHeader(b, uint32(len(keep)))
	for _, h := range keep {
		b = msgp.AppendString(b, h.Key)
		b = msgp.AppendBytes(b, h.Value)
	}
	return b
}

// hasDup reports whether two headers share a name. Records usually have a
// handful of headers, where a scan beats building a map.
func hasDup(hs []elog.Header) bool {
	if len(hs) > 16 {
		return true // let the caller's map sort it out
	}
	for i := range hs {
		for j := range i {
			if hs[i].Key == hs[j].Key {
				return true
			}
		}
	}
	return false
}
