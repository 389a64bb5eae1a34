package api_test

import (
	"bytes"
	"testing"

	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/tinylib/msgp/msgp"
)

// TestMsgpack asks for msgpack and decodes the answer with the msgp
// runtime, checking it holds the same records as the JSON answer.
func TestMsgpack(t *testing.T) {
	e := newEnv(t, nil, nil)
	binary := []byte{0xff, 0x00, 0xfe}
	p, _ := e.log.Partition("t", 0)
	if _, err := p.Append(bg, []elog.Record{
		{Timestamp: 1234567890123456789, Key: []byte("dev-1"), Value: binary,
			Headers: []elog.Header{{Key: "mqtt.topic", Value: []byte("a/b")}, {Key: "mqtt.topic", Value: []byte("dup")}}},
		{Timestamp: 5, Value: []byte("two")},
	}); err != nil {
		t.Fatal(err)
	}
	for _, accept := range []string{"application/msgpack", "text/html, application/x-msgpack;q=0.9"} {
		r := get(t, e.url+"/v1/topics/t/partitions/0/records?offset=0&limit=10", "Accept", accept)
		if r.code != 200 || r.header.Get("Content-Type") != "application/msgpack" {
			t.Fatalf("Accept %q: %d %q", accept, r.code, r.header.Get("Content-Type"))
		}
		v, rest, err := msgp.ReadIntfBytes(r.body)
		if err != nil || len(rest) != 0 {
			t.Fatalf("decode: %v (%d bytes left)", err, len(rest))
		}
		m := v.(map[string]any)
		if m["next_offset"] != int64(2) || m["start_offset"] != int64(0) || m["end_offset"] != int64(2) {
			t.Fatalf("offsets: %v", m)
		}
		recs := m["records"].([]any)
		if len(recs) != 2 {
			t.Fatalf("%d records", len(recs))
		}
		r0 := recs[0].(map[string]any)
		if len(r0) != 5 || r0["offset"] != int64(0) || r0["timestamp"] != int64(1234567890123456789) ||
			!bytes.Equal(r0["key"].([]byte), []byte("dev-1")) || !bytes.Equal(r0["value"].([]byte), binary) {
			t.Fatalf("record 0: %v", r0)
		}
		h := r0["headers"].(map[string]any)
		if len(h) != 1 || !bytes.Equal(h["mqtt.topic"].([]byte), []byte("a/b")) {
			t.Fatalf("headers: %v", h)
		}
		if r1 := recs[1].(map[string]any); r1["offset"] != int64(1) || string(r1["value"].([]byte)) != "two" {
			t.Fatalf("record 1: %v", r1)
		}
	}
	// q=0 refuses msgpack; errors stay JSON.
	if r := get(t, e.url+"/v1/topics/t/partitions/0/records", "Accept", "application/msgpack;q=0"); r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("q=0: %q", r.header.Get("Content-Type"))
	}
	if r := get(t, e.url+"/v1/topics/t/partitions/0/records?offset=99", "Accept", "application/msgpack"); r.code != 416 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("error in msgpack mode: %d %q", r.code, r.header.Get("Content-Type"))
	}
}
