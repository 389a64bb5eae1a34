package wire

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Header names of the upstream contract. NATS header names are
// case-sensitive for nats.go; consumers should use these exact spellings.
const (
	// HeaderMsgID is JetStream's deduplication header; see MsgID.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderSite, HeaderNode, HeaderTopic and HeaderPartition carry the
	// Origin (the topic in its log spelling, with dots).
	HeaderSite      = "Outpost-Site"
	HeaderNode      = "Outpost-Node"
	HeaderTopic     = "Outpost-Topic"
	HeaderPartition = "Outpost-Partition"
	// HeaderOffset is the record's origin offset; on a batch message, the
	// first record's.
	HeaderOffset = "Outpost-Offset"
	// HeaderLastOffset is the last record's origin offset; batch messages
	// only.
	HeaderLastOffset = "Outpost-Last-Offset"
	// HeaderBatch marks a batch message; its value is the batch format
	// (BatchFormatV1). A message without it holds exactly one record whose
	// value is the message data.
	HeaderBatch = "Outpost-Batch"
	// HeaderKey is the record key (EncodeHeaderValue); absent when empty.
	HeaderKey = "Outpost-Key"
	// HeaderTimestamp is the device timestamp, decimal Unix nanoseconds.
	HeaderTimestamp = "Outpost-Timestamp"
	// HeaderMQTTTopic is the MQTT topic (EncodeHeaderValue); absent when
	// empty.
	HeaderMQTTTopic = "Outpost-Mqtt-Topic"
	// HeaderSchemaID is the registry schema ID, decimal; absent when 0.
	HeaderSchemaID = "Outpost-Schema-Id"
	// HeaderUser carries the record's user headers, one value per header in
	// record order: EncodeHeaderKey(key) + "=" + EncodeHeaderValue(value).
	// One repeated NATS header (rather than a name per user key) is what
	// keeps their order, duplicate keys and keys that are not valid NATS
	// header names.
	HeaderUser = "Outpost-Header"
)

// B64Marker starts a header value that is base64 (standard alphabet, no
// padding) of the real bytes.
const B64Marker = "b64:"

var b64 = base64.RawStdEncoding.Strict()

// textSafe reports whether s can travel verbatim in a NATS header value:
// valid UTF-8 without control characters (CR/LF would end the header line),
// no leading or trailing blank (readers trim them) and not starting with
// B64Marker (which would be read as encoded).
func textSafe(s string) bool {
	if s == "" {
		return true
	}
	if !utf8.ValidString(s) || strings.HasPrefix(s, B64Marker) {
		return false
	}
	if c := s[0]; c == ' ' || c == '\t' {
		return false
	}
	if c := s[len(s)-1]; c == ' ' || c == '\t' {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return false
		}
	}
	return true
}

// EncodeHeaderValue returns b as a NATS header value: verbatim when it is
// safe text (see textSafe), else B64Marker + base64. DecodeHeaderValue
// reverses it for every input.
func EncodeHeaderValue(b []byte) string {
	if s := string(b); textSafe(s) {
		return s
	}
	return B64Marker + b64.EncodeToString(b)
}

// DecodeHeaderValue reverses EncodeHeaderValue.
func DecodeHeaderValue(s string) ([]byte, error) {
	if enc, ok := strings.CutPrefix(s, B64Marker); ok {
		b, err := b64.DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("wire: header value %q: bad base64: %w", s, err)
		}
		return b, nil
	}
	return []byte(s), nil
}

// EncodeHeaderKey encodes a user header key like EncodeHeaderValue, and
// also base64-encodes keys containing '=', the key/value separator of
// HeaderUser (the base64 alphabet without padding has no '=').
func EncodeHeaderKey(k string) string {
	if textSafe(k) && !strings.Contains(k, "=") {
		return k
	}
	return B64Marker + b64.EncodeToString([]byte(k))
}

func encodeUserHeader(h Header) string {
	return EncodeHeaderKey(h.Key) + "=" + EncodeHeaderValue(h.Value)
}

func decodeUserHeader(s string) (Header, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return Header{}, fmt.Errorf("wire: %s value %q has no '='", HeaderUser, s)
	}
	key, err := DecodeHeaderValue(k)
	if err != nil {
		return Header{}, err
	}
	val, err := DecodeHeaderValue(v)
	if err != nil {
		return Header{}, err
	}
	return Header{Key: string(key), Value: val}, nil
}
