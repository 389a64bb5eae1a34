package mqtt

import (
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// Header names of the records the hook writes (the contract's spelling,
// core/wire).
const (
	HeaderTopic       = wire.RecordHeaderMQTTTopic
	HeaderClientID    = wire.RecordHeaderMQTTClientID
	HeaderQoS         = wire.RecordHeaderMQTTQoS
	HeaderContentType = wire.RecordHeaderMQTTContentType
	// HeaderUserPrefix prefixes MQTT 5 user property names.
	HeaderUserPrefix = wire.RecordHeaderMQTTUserPrefix
)

// topicCache is a session's last publish topic as a header value and
// whether a local subscriber (or the retained store) wants it.
type topicCache struct {
	name    string
	value   []byte
	gen     uint64 // Hook.subGen when subs was looked up
	subs    bool
	checked bool // subs is valid for gen
	// hdrs are the headers of a publish of QoS qos on this topic with no
	// properties that become headers: records share them, read-only.
	qos  byte
	hdrs []log.Header
}

// wantsFanout reports whether a durable publish must go through mochi: to
// a local subscriber, or to the retained store. Most publishes of a device
// go to a topic nobody on the node subscribes to, and mochi's subscriber
// lookup allocates maps per call, so the answer is cached per session until
// a subscription changes.
func (h *Hook) wantsFanout(s *session, pk *packets.Packet) bool {
	if !h.cfg.Server.Options.InlineClient {
		return false // nothing to fan out with (see Config.Server)
	}
	if pk.FixedHeader.Retain {
		return true
	}
	return h.topicFor(s, pk.TopicName, true).subs
}

// topicFor returns the session's cache entry for topic, with a current
// subscriber answer if subs.
func (h *Hook) topicFor(s *session, topic string, subs bool) *topicCache {
	// The generation is read before the index: a subscription added after
	// this read bumps it and the next publish looks again.
	gen := h.subGen.Load()
	c := s.topic.Load()
	if c != nil && c.name == topic && (!subs || (c.checked && c.gen == gen)) {
		return c
	}
	n := &topicCache{name: topic}
	if c != nil && c.name == topic {
		n.value, n.qos, n.hdrs = c.value, c.qos, c.hdrs
	} else {
		n.value = []byte(topic)
	}
	if subs {
		n.gen, n.checked = gen, true
		n.subs = hasSubscribers(h.cfg.Server, topic)
	}
	s.topic.Store(n)
	return n
}

// headerCount is the number of headers record gives pk.
func headerCount(pk *packets.Packet, pl placement) int {
	return 3 + len(pk.Properties.User) + min(len(pk.Properties.ContentType), 1) + len(pl.extra)
}

// sharedHeaders returns the headers of a publish that has only the three
// that every record has, shared with the session's other records of that
// topic and QoS, or nil if pk has more. Most devices publish to one or a
// few topics, so most records then need no headers of their own.
func (h *Hook) sharedHeaders(s *session, pk *packets.Packet, pl placement) []log.Header {
	if len(pk.Properties.User) > 0 || pk.Properties.ContentType != "" || len(pl.extra) > 0 {
		return nil
	}
	qos := min(pk.FixedHeader.Qos, 2)
	c := h.topicFor(s, pk.TopicName, false)
	if c.hdrs != nil && c.qos == qos {
		return c.hdrs
	}
	// Replaced, not changed: records already queued keep the old headers.
	n := *c
	n.qos = qos
	n.hdrs = []log.Header{
		{Key: HeaderTopic, Value: c.value},
		{Key: HeaderClientID, Value: s.idBytes},
		{Key: HeaderQoS, Value: h.qosHdr[qos]},
	}
	n.hdrs = n.hdrs[:3:3]
	s.topic.Store(&n)
	return n.hdrs
}

// record builds the log record of a placed publish, with its headers
// shared (see sharedHeaders) or in hdrs (length 0, capacity headerCount;
// nil allocates). The MQTT topic header comes first (appendQoS0 reads it
// back). Header values shared between records (client id, QoS, a repeated
// topic) are never written to.
func (h *Hook) record(s *session, pk *packets.Packet, pl placement, at time.Time, hdrs []log.Header) log.Record {
	t := pl.target
	if sh := h.sharedHeaders(s, pk, pl); sh != nil {
		return log.Record{Timestamp: at.UnixNano(), Key: t.Key, Value: pk.Payload, Headers: sh}
	}
	if hdrs == nil {
		hdrs = make([]log.Header, 0, headerCount(pk, pl))
	}
	hdrs = append(hdrs,
		log.Header{Key: HeaderTopic, Value: h.topicFor(s, pk.TopicName, false).value},
		log.Header{Key: HeaderClientID, Value: s.idBytes},
		log.Header{Key: HeaderQoS, Value: h.qosHdr[min(pk.FixedHeader.Qos, 2)]},
	)
	if ct := pk.Properties.ContentType; ct != "" {
		hdrs = append(hdrs, log.Header{Key: HeaderContentType, Value: []byte(ct)})
	}
	for _, u := range pk.Properties.User {
		hdrs = append(hdrs, log.Header{Key: HeaderUserPrefix + u.Key, Value: []byte(u.Val)})
	}
	hdrs = append(hdrs, pl.extra...)
	return log.Record{Timestamp: at.UnixNano(), Key: t.Key, Value: pk.Payload, Headers: hdrs}
}
