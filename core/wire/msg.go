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

// Encoder builds the messages of one origin partition. It validates the
// origin and computes the subject and origin headers once, so a forwarder
// pays only for what differs per record. It is immutable and safe for
// concurrent use; the messages it returns share read-only header value
// slices, so callers must replace header values (Set), not modify them in
// place.
type Encoder struct {
	origin  Origin
	subject string
	idPref  string   // "site/node/topic/partition/"
	site    []string // shared, read-only header values
	node    []string
	topic   []string
	part    []string
	batchV1 []string
}

// NewEncoder returns the Encoder of origin o under prefix.
func NewEncoder(prefix string, o Origin) (*Encoder, error) {
	subj, err := Subject(prefix, o)
	if err != nil {
		return nil, err
	}
	return &Encoder{
		origin:  o,
		subject: subj,
		idPref:  o.String() + "/",
		site:    []string{o.Site},
		node:    []string{o.Node},
		topic:   []string{o.Topic},
		part:    []string{strconv.FormatInt(int64(o.Partition), 10)},
		batchV1: []string{BatchFormatV1},
	}, nil
}

// Origin returns the encoder's origin.
func (e *Encoder) Origin() Origin { return e.origin }

// Subject returns the partition's subject, for LastOffset.
func (e *Encoder) Subject() string { return e.subject }

func (e *Encoder) headers(n int) nats.Header {
	h := make(nats.Header, n)
	h[HeaderSite] = e.site
	h[HeaderNode] = e.node
	h[HeaderTopic] = e.topic
	h[HeaderPartition] = e.part
	return h
}

// Msg returns the record-per-message form of r: subject Subject(prefix,
// o), data r.Value, and every other field in headers, so any NATS client can
// read it. The message aliases r.Value.
func (e *Encoder) Msg(r Record) (*nats.Msg, error) {
	if r.Offset < 0 {
		return nil, fmt.Errorf("%w: %s: offset %d is negative", ErrBadMessage, e.origin, r.Offset)
	}
	if len(r.Headers) > MaxHeaders {
		return nil, fmt.Errorf("%w: %s/%d: %d headers, at most %d", ErrBadMessage, e.origin, r.Offset, len(r.Headers), MaxHeaders)
	}
	h := e.headers(12)
	off := strconv.FormatInt(r.Offset, 10)
	h[HeaderMsgID] = []string{e.idPref + off}
	h[HeaderOffset] = []string{off}
	h[HeaderTimestamp] = []string{strconv.FormatInt(r.Timestamp, 10)}
	if len(r.Key) > 0 {
		h[HeaderKey] = []string{EncodeHeaderValue(r.Key)}
	}
	if r.MQTTTopic != "" {
		h[HeaderMQTTTopic] = []string{EncodeHeaderValue([]byte(r.MQTTTopic))}
	}
	if r.SchemaID != 0 {
		h[HeaderSchemaID] = []string{strconv.FormatInt(r.SchemaID, 10)}
	}
	if len(r.Headers) > 0 {
		uh := make([]string, len(r.Headers))
		for i, x := range r.Headers {
			uh[i] = encodeUserHeader(x)
		}
		h[HeaderUser] = uh
	}
	return &nats.Msg{Subject: e.subject, Header: h, Data: r.Value}, nil
}

// BatchMsg returns one message holding recs (at least one, offsets
// strictly increasing) in batch format: the partition's subject, origin
// headers, HeaderBatch, HeaderOffset and HeaderLastOffset, and the
// EncodeBatch payload. Only Parse-aware consumers can read it; that is the
// price of one stream write (and one fsync under sync_interval: always) for
// many records.
func (e *Encoder) BatchMsg(recs []Record) (*nats.Msg, error) {
	data, err := EncodeBatch(recs)
	if err != nil {
		return nil, fmt.Errorf("%w (origin %s)", err, e.origin)
	}
	first, last := recs[0].Offset, recs[len(recs)-1].Offset
	h := e.headers(8)
	fs, ls := strconv.FormatInt(first, 10), strconv.FormatInt(last, 10)
	h[HeaderMsgID] = []string{e.idPref + fs + "-" + ls}
	h[HeaderBatch] = e.batchV1
	h[HeaderOffset] = []string{fs}
	h[HeaderLastOffset] = []string{ls}
	return &nats.Msg{Subject: e.subject, Header: h, Data: data}, nil
}

// NewMsg is NewEncoder(prefix, o) then Msg(r); forwarders should keep an
// Encoder per partition instead.
func NewMsg(prefix string, o Origin, r Record) (*nats.Msg, error) {
	e, err := NewEncoder(prefix, o)
	if err != nil {
		return nil, err
	}
	return e.Msg(r)
}

// NewBatchMsg is NewEncoder(prefix, o) then BatchMsg(recs).
func NewBatchMsg(prefix string, o Origin, recs []Record) (*nats.Msg, error) {
	e, err := NewEncoder(prefix, o)
	if err != nil {
		return nil, err
	}
	return e.BatchMsg(recs)
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
