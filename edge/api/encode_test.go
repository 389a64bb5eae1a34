package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/tinylib/msgp/msgp"
)

// FuzzRecordEncoding: any record encodes to JSON whose base64 fields
// decode to the record's bytes, whose *_text fields appear exactly for
// valid UTF-8, and to msgpack that decodes to the same bytes.
func FuzzRecordEncoding(f *testing.F) {
	f.Add(int64(0), []byte("dev-1"), []byte(`{"t":21.5}`), "mqtt.topic", []byte("a/b"))
	f.Add(int64(-1), []byte{}, []byte{0xff, 0xfe}, "", []byte{0})
	f.Add(int64(1<<62), []byte{0xc3, 0x28}, []byte("é"), "k\x00", []byte("\u2028"))
	f.Fuzz(func(t *testing.T, ts int64, key, value []byte, hk string, hv []byte) {
		rec := elog.Record{Offset: 7, Timestamp: ts, Key: key, Value: value,
			Headers: []elog.Header{{Key: hk, Value: hv}, {Key: hk, Value: []byte("second")}}}
		b, err := json.Marshal(toJSON(&rec))
		if err != nil {
			t.Fatal(err)
		}
		var got recordJSON
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		checkB64(t, "key", got.Key, key)
		checkB64(t, "value", got.Value, value)
		checkText(t, "key_text", got.KeyText, key)
		checkText(t, "value_text", got.ValueText, value)
		if _, err := time.Parse(time.RFC3339Nano, got.Timestamp); err != nil && ts >= 0 && ts < 1<<62 {
			t.Fatalf("timestamp %q: %v", got.Timestamp, err)
		}
		if len(got.Headers) != 1 {
			t.Fatalf("headers %v: want one (the first of two with one name)", got.Headers)
		}
		for _, v := range got.Headers { // the key may have been made valid UTF-8 by encoding/json
			checkB64(t, "header", v, hv)
		}

		mp := appendRecordsMsgpack(nil, []elog.Record{rec}, 8, 0, 8)
		v, rest, err := msgp.ReadIntfBytes(mp)
		if err != nil || len(rest) != 0 {
			t.Fatalf("msgpack: %v, %d bytes left", err, len(rest))
		}
		r0 := v.(map[string]any)["records"].([]any)[0].(map[string]any)
		if r0["timestamp"] != ts || !bytes.Equal(r0["key"].([]byte), key) || !bytes.Equal(r0["value"].([]byte), value) {
			t.Fatalf("msgpack record %v", r0)
		}
		h := r0["headers"].(map[string]any)
		if len(h) != 1 || !bytes.Equal(h[hk].([]byte), hv) {
			t.Fatalf("msgpack headers %v", h)
		}
	})
}

func checkB64(t *testing.T, field, got string, want []byte) {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(got)
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("%s %q decodes to %q (%v), want %q", field, got, b, err, want)
	}
}

func checkText(t *testing.T, field string, got *string, raw []byte) {
	t.Helper()
	if utf8.Valid(raw) != (got != nil) {
		t.Fatalf("%s present=%v for %q (valid UTF-8: %v)", field, got != nil, raw, utf8.Valid(raw))
	}
	if got != nil && *got != string(raw) {
		t.Fatalf("%s %q, want %q", field, *got, raw)
	}
}
