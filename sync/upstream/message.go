package upstream

import (
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// message builds the next message from buf: one record, or in batch mode as
// many as fit (or exactly the next of cuts, when repeating a batch).
func (p *partition) message(buf []log.Record, cuts *[]span, maxPayload int) (*nats.Msg, int, error) {
	cfg := &p.f.cfg
	if cfg.Mode == ModeRecord {
		m, err := p.enc.Msg(toWire(&buf[0]))
		if err != nil {
			return nil, 0, fmt.Errorf("upstream: %w", err)
		}
		return m, 1, nil
	}
	limit := min(cfg.MaxBatchBytes, maxPayload-4096)
	n := 0
	bytes := 0
	cutLast := int64(-1)
	for len(*cuts) > 0 && (*cuts)[0].Last < buf[0].Offset {
		*cuts = (*cuts)[1:]
	}
	if len(*cuts) > 0 && (*cuts)[0].First == buf[0].Offset {
		cutLast = (*cuts)[0].Last
		*cuts = (*cuts)[1:]
	}
	recs := make([]wire.Record, 0, min(len(buf), cfg.MaxBatchRecords))
	for i := range buf {
		if cutLast >= 0 {
			if buf[i].Offset > cutLast {
				break
			}
		} else {
			sz := recordBytes(&buf[i])
			if n >= cfg.MaxBatchRecords || (n > 0 && bytes+sz > limit) {
				break
			}
			bytes += sz
		}
		recs = append(recs, toWire(&buf[i]))
		n++
	}
	m, err := p.enc.BatchMsg(recs)
	if err != nil {
		return nil, 0, fmt.Errorf("upstream: %w", err)
	}
	return m, n, nil
}

func toWire(r *log.Record) wire.Record {
	w := wire.Record{Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		w.Headers = make([]wire.Header, len(r.Headers))
		for i, h := range r.Headers {
			w.Headers[i] = wire.Header{Key: h.Key, Value: h.Value}
			switch {
			case h.Key == wire.RecordHeaderMQTTTopic && w.MQTTTopic == "":
				w.MQTTTopic = string(h.Value)
			case h.Key == wire.RecordHeaderSchemaID && w.SchemaID == 0:
				// The edge's schema check names the schema it checked the
				// payload against (bridge/schemacheck); a value that is not
				// a registry ID is left as a user header only.
				if id, err := strconv.ParseInt(string(h.Value), 10, 32); err == nil && id > 0 {
					w.SchemaID = id
				}
			}
		}
	}
	return w
}

// recordBytes estimates a record's size in a batch payload.
func recordBytes(r *log.Record) int {
	n := 32 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 8 + len(h.Key) + len(h.Value)
	}
	return n
}

func headerBytes(h nats.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
