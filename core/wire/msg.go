package wire

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
)

// MaxHeaders is the most user headers one record may carry upstream. The
// batch decoder refuses more (a bound on what a forged length can make it
// allocate); the edge log has no such limit, so a forwarder must check.
const MaxHeaders = 65536

// ErrBadMessage is wrapped by every error about a message that does not
// follow the upstream contract.
var ErrBadMessage = errors.New("wire: bad message")

// MsgID returns the Nats-Msg-Id of the record at offset in o:
// site/node/topic/partition/offset. It is a pure function of the origin
// coordinates, so a resend of the same record, by the same node after a
// restart or by a peer after failover, is deduplicated by the stream within
// its duplicate window.
func MsgID(o Origin, offset int64) string {
	return o.String() + "/" + strconv.FormatInt(offset, 10)
}

// BatchMsgID returns the Nats-Msg-Id of a batch message holding offsets
// first..last of o: site/node/topic/partition/first-last. A batch resent
// with the same bounds is deduplicated; a batch cut differently is not, which
// is why forwarders resume from LastOffset rather than rely on the window.
func BatchMsgID(o Origin, first, last int64) string {
	return o.String() + "/" + strconv.FormatInt(first, 10) + "-" + strconv.FormatInt(last, 10)
}

func originHeaders(o Origin) nats.Header {
	h := make(nats.Header, 8)
	h.Set(HeaderSite, o.Site)
	h.Set(HeaderNode, o.Node)
	h.Set(HeaderTopic, o.Topic)
	h.Set(HeaderPartition, strconv.FormatInt(int64(o.Partition), 10))
	return h
}

// NewMsg returns the record-per-message form of r: subject Subject(prefix,
// o), data r.Value, and every other field in headers, so any NATS client can
// read it. The message aliases r.Value.
func NewMsg(prefix string, o Origin, r Record) (*nats.Msg, error) {
	subj, err := Subject(prefix, o)
	if err != nil {
		return nil, err
	}
	if r.Offset < 0 {
		return nil, fmt.Errorf("%w: %s: offset %d is negative", ErrBadMessage, o, r.Offset)
	}
	if len(r.Headers) > MaxHeaders {
		return nil, fmt.Errorf("%w: %s/%d: %d headers, at most %d", ErrBadMessage, o, r.Offset, len(r.Headers), MaxHeaders)
	}
	h := originHeaders(o)
	h.Set(HeaderMsgID, MsgID(o, r.Offset))
	h.Set(HeaderOffset, strconv.FormatInt(r.Offset, 10))
	h.Set(HeaderTimestamp, strconv.FormatInt(r.Timestamp, 10))
	if len(r.Key) > 0 {
		h.Set(HeaderKey, EncodeHeaderValue(r.Key))
	}
	if r.MQTTTopic != "" {
		h.Set(HeaderMQTTTopic, EncodeHeaderValue([]byte(r.MQTTTopic)))
	}
	if r.SchemaID != 0 {
		h.Set(HeaderSchemaID, strconv.FormatInt(r.SchemaID, 10))
	}
	for _, uh := range r.Headers {
		h.Add(HeaderUser, encodeUserHeader(uh))
	}
	return &nats.Msg{Subject: subj, Header: h, Data: r.Value}, nil
}

// NewBatchMsg returns one message holding recs (at least one, offsets
// strictly increasing) in batch format: the partition's subject, origin
// headers, HeaderBatch, HeaderOffset and HeaderLastOffset, and the
// EncodeBatch payload. Only Parse-aware consumers can read it; that is the
// price of one stream write (and one fsync under sync_interval: always) for
// many records.
func NewBatchMsg(prefix string, o Origin, recs []Record) (*nats.Msg, error) {
	subj, err := Subject(prefix, o)
	if err != nil {
		return nil, err
	}
	data, err := EncodeBatch(recs)
	if err != nil {
		return nil, fmt.Errorf("%w (origin %s)", err, o)
	}
	first, last := recs[0].Offset, recs[len(recs)-1].Offset
	h := originHeaders(o)
	h.Set(HeaderMsgID, BatchMsgID(o, first, last))
	h.Set(HeaderBatch, BatchFormatV1)
	h.Set(HeaderOffset, strconv.FormatInt(first, 10))
	h.Set(HeaderLastOffset, strconv.FormatInt(last, 10))
	return &nats.Msg{Subject: subj, Header: h, Data: data}, nil
}

// Message is a decoded upstream message.
type Message struct {
	// Origin is the partition the records come from.
	Origin Origin
	// Batch tells whether the message was in batch format.
	Batch bool
	// Records holds one record (record-per-message) or the batch, in offset
	// order.
	Records []Record
}

// ParseMsg decodes m; see Parse.
func ParseMsg(m *nats.Msg) (Message, error) {
	return Parse(m.Header, m.Data)
}

// Parse decodes an upstream message from its headers and data, in either
// format. It needs no prefix: the origin travels in headers. In
// record-per-message form the record's Value aliases data. Unknown Outpost-
// headers are ignored, so newer edges can add some.
func Parse(h nats.Header, data []byte) (Message, error) {
	var msg Message
	o, err := parseOrigin(h)
	if err != nil {
		return msg, err
	}
	msg.Origin = o
	first, err := headerInt(h, HeaderOffset, true)
	if err != nil {
		return msg, err
	}
	if format := h.Get(HeaderBatch); format != "" {
		if format != BatchFormatV1 {
			return msg, fmt.Errorf("%w: %s: batch format %q is not known; upgrade this consumer", ErrBadMessage, o, format)
		}
		last, err := headerInt(h, HeaderLastOffset, true)
		if err != nil {
			return msg, err
		}
		recs, err := DecodeBatch(data)
		if err != nil {
			return msg, fmt.Errorf("%w (origin %s)", err, o)
		}
		if recs[0].Offset != first || recs[len(recs)-1].Offset != last {
			return msg, fmt.Errorf("%w: %s: batch holds offsets %d..%d, headers say %d..%d",
				ErrBadMessage, o, recs[0].Offset, recs[len(recs)-1].Offset, first, last)
		}
		msg.Batch, msg.Records = true, recs
		return msg, nil
	}
	r := Record{Offset: first, Value: data}
	if r.Timestamp, err = headerInt(h, HeaderTimestamp, false); err != nil {
		return msg, err
	}
	if r.SchemaID, err = headerInt(h, HeaderSchemaID, false); err != nil {
		return msg, err
	}
	if v := h.Get(HeaderKey); v != "" {
		if r.Key, err = DecodeHeaderValue(v); err != nil {
			return msg, fmt.Errorf("%w: %s: %w", ErrBadMessage, HeaderKey, err)
		}
	}
	if v := h.Get(HeaderMQTTTopic); v != "" {
		t, err := DecodeHeaderValue(v)
		if err != nil {
			return msg, fmt.Errorf("%w: %s: %w", ErrBadMessage, HeaderMQTTTopic, err)
		}
		r.MQTTTopic = string(t)
	}
	if uhs := h.Values(HeaderUser); len(uhs) > 0 {
		if len(uhs) > MaxHeaders {
			return msg, fmt.Errorf("%w: %d user headers, at most %d", ErrBadMessage, len(uhs), MaxHeaders)
		}
		r.Headers = make([]Header, 0, len(uhs))
		for _, s := range uhs {
			uh, err := decodeUserHeader(s)
			if err != nil {
				return msg, fmt.Errorf("%w: %w", ErrBadMessage, err)
			}
			r.Headers = append(r.Headers, uh)
		}
	}
	msg.Records = []Record{r}
	return msg, nil
}

func parseOrigin(h nats.Header) (Origin, error) {
	o := Origin{Site: h.Get(HeaderSite), Node: h.Get(HeaderNode), Topic: h.Get(HeaderTopic)}
	ps := h.Get(HeaderPartition)
	if ps == "" {
		return o, fmt.Errorf("%w: no %s header; not an Outpost record", ErrBadMessage, HeaderPartition)
	}
	p, err := parsePartition(ps)
	if err != nil {
		return o, fmt.Errorf("%w: %s: %w", ErrBadMessage, HeaderPartition, err)
	}
	o.Partition = p
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	return o, nil
}

// headerInt parses a decimal header; a missing optional header is 0.
// Offsets must be >= 0.
func headerInt(h nats.Header, name string, required bool) (int64, error) {
	s := h.Get(name)
	if s == "" {
		if required {
			return 0, fmt.Errorf("%w: no %s header", ErrBadMessage, name)
		}
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not an integer", ErrBadMessage, name, s)
	}
	if (name == HeaderOffset || name == HeaderLastOffset) && v < 0 {
		return 0, fmt.Errorf("%w: %s %d is negative", ErrBadMessage, name, v)
	}
	return v, nil
}
