package mqtt

import (
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/edge/log"
)

// Publish is what the check stage sees of a publish: read-only. Payload and
// UserProperties alias the packet; a checker that keeps them past its call
// copies them.
type Publish struct {
	// Client is the publishing client's id.
	Client string
	// Protocol is the client's MQTT version: 4 (3.1.1) or 5 (3 for 3.1).
	Protocol byte
	// Topic is the MQTT topic.
	Topic string
	// LogTopic is the log topic the routes chose.
	LogTopic string
	// QoS is the publish's QoS.
	QoS byte
	// Payload is the message.
	Payload []byte
	// ContentType is the MQTT 5 content type, if any.
	ContentType string
	// UserProperties are the MQTT 5 user properties.
	UserProperties []packets.UserProperty
}

// Verdict is the check stage's answer; the zero Verdict accepts the
// publish as routed.
type Verdict struct {
	// Refuse: the publish is not appended. An MQTT 5 QoS 1/2 publish gets
	// PUBACK/PUBREC with Code; MQTT 3.1.1 has no negative ack, so its client
	// is disconnected without one (and will resend): a checker that wants
	// 3.1.1 data kept returns RedirectTo instead. A refused QoS 0 publish
	// is dropped and counted.
	Refuse bool
	// Code is the MQTT 5 reason code of a refusal, e.g. 0x99 (payload
	// format invalid); below 0x80 means 0x80 (unspecified error).
	Code byte
	// Reason is the MQTT 5 reason string of a refusal.
	Reason string
	// RedirectTo appends the publish to this log topic instead of the
	// routed one (e.g. "<topic>.dead"), with the same key; the topic must
	// exist in the log, or the publish is refused as unroutable.
	RedirectTo string
	// Headers are added to the record after the MQTT headers (schema id,
	// dead-letter reason …).
	Headers []log.Header
}

// refusal is the error a refused publish completes with, so that it goes
// out in arrival order like any other outcome.
type refusal struct {
	code   byte
	reason string
}

func (r *refusal) Error() string {
	return fmt.Sprintf("mqtt: refused by the check stage: 0x%02x %s", r.code, r.reason)
}

// placement is where the check stage sends a publish: the routed target or
// a redirect, plus the headers the checker adds.
type placement struct {
	target route.Target
	extra  []log.Header
	// redirected: the check stage moved the publish to another log topic
	// (a dead letter); it is not delivered to local subscribers or
	// retained under its MQTT topic.
	redirected bool
	err        error // refused, or the redirect target does not exist
}

// check runs the check stage for a routed publish. With no checker it
// costs one comparison.
func (h *Hook) check(protocol byte, client string, pk *packets.Packet, t route.Target) placement {
	if h.cfg.Check == nil {
		return placement{target: t}
	}
	v := h.cfg.Check(Publish{
		Client: client, Protocol: protocol, Topic: pk.TopicName, LogTopic: t.Topic,
		QoS: pk.FixedHeader.Qos, Payload: pk.Payload, ContentType: pk.Properties.ContentType,
		UserProperties: pk.Properties.User,
	})
	switch {
	case v.Refuse:
		code := v.Code
		if code < packets.ErrUnspecifiedError.Code {
			code = packets.ErrUnspecifiedError.Code
		}
		h.m.checkRefused.Inc()
		return placement{target: t, err: &refusal{code: code, reason: v.Reason}}
	case v.RedirectTo != "" && v.RedirectTo != t.Topic:
		h.m.checkRedirected.Inc()
		tc, err := h.cfg.Log.TopicConfig(v.RedirectTo)
		if err != nil {
			return placement{target: t, err: fmt.Errorf("mqtt: check stage redirect: %w", err)}
		}
		t.Topic, t.Partition = v.RedirectTo, route.Partition(t.Key, max(tc.Partitions, 1))
		return placement{target: t, extra: v.Headers, redirected: true}
	}
	return placement{target: t, extra: v.Headers}
}
