package wire_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// weirdStrings are header keys/values that break naive NATS header use.
var weirdStrings = []string{
	"", "plain", "with space", " leading", "trailing ", "\ttab", "a=b", "==", "k: v",
	"line\r\nbreak", "nul\x00byte", "\xff\xfe invalid utf8", "b64:looks-encoded", "b64:",
	"ünïcödé ✓", "\u0085c1", "\x7fdel", strings.Repeat("x", 1000), "Nats-Msg-Id", "%41",
}

func weirdRecord(off int64) wire.Record {
	r := wire.Record{
		Offset:    off,
		Timestamp: time.Date(2026, 11, 23, 1, 2, 3, 456789012, time.UTC).UnixNano(),
		Key:       []byte("dev-\x00\xff"),
		Value:     []byte{0, 1, 2, 0xff, '\r', '\n'},
		MQTTTopic: "site/a b/+weird/ü",
		SchemaID:  42,
	}
	for i, k := range weirdStrings {
		v := weirdStrings[(i+3)%len(weirdStrings)]
		r.Headers = append(r.Headers, wire.Header{Key: k, Value: []byte(v)})
	}
	// Duplicate keys keep their order.
	r.Headers = append(r.Headers, wire.Header{Key: "dup", Value: []byte("1")}, wire.Header{Key: "dup", Value: []byte("2")})
	return r
}

func sameRecord(a, b wire.Record) error {
	if a.Offset != b.Offset || a.Timestamp != b.Timestamp || a.MQTTTopic != b.MQTTTopic || a.SchemaID != b.SchemaID {
		return fmt.Errorf("scalar fields differ: %d/%d/%q/%d vs %d/%d/%q/%d",
			a.Offset, a.Timestamp, a.MQTTTopic, a.SchemaID, b.Offset, b.Timestamp, b.MQTTTopic, b.SchemaID)
	}
	if !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) {
		return fmt.Errorf("key/value differ: %q=%q vs %q=%q", a.Key, a.Value, b.Key, b.Value)
	}
	if len(a.Headers) != len(b.Headers) {
		return fmt.Errorf("%d headers vs %d", len(a.Headers), len(b.Headers))
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !bytes.Equal(a.Headers[i].Value, b.Headers[i].Value) {
			return fmt.Errorf("header %d: %q=%q vs %q=%q", i, a.Headers[i].Key, a.Headers[i].Value, b.Headers[i].Key, b.Headers[i].Value)
		}
	}
	return nil
}

func TestHeaderValueRoundTrip(t *testing.T) {
	for _, s := range weirdStrings {
		enc := wire.EncodeHeaderValue([]byte(s))
		if strings.ContainsAny(enc, "\r\n") || strings.TrimSpace(enc) != enc {
			t.Fatalf("EncodeHeaderValue(%q) = %q is not a safe header value", s, enc)
		}
		dec, err := wire.DecodeHeaderValue(enc)
		if err != nil || string(dec) != s {
			t.Fatalf("round trip of %q: %q, %v", s, dec, err)
		}
		k := wire.EncodeHeaderKey(s)
		if strings.Contains(k, "=") {
			t.Fatalf("EncodeHeaderKey(%q) = %q contains '='", s, k)
		}
	}
	if got := wire.EncodeHeaderValue([]byte("celsius")); got != "celsius" {
		t.Fatalf("plain text was encoded: %q", got)
	}
	if _, err := wire.DecodeHeaderValue("b64:!!"); err == nil {
		t.Fatal("bad base64 accepted")
	}
}

func TestMsgRoundTripInMemory(t *testing.T) {
	o := wire.Origin{Site: "farm", Node: "pi-1", Topic: "a.b", Partition: 3}
	r := weirdRecord(99)
	m, err := wire.NewMsg("outpost", o, r)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "outpost.a~b.farm.pi-1.3" || m.Header.Get(wire.HeaderMsgID) != "farm/pi-1/a.b/3/99" {
		t.Fatalf("subject %q msg id %q", m.Subject, m.Header.Get(wire.HeaderMsgID))
	}
	if m.Header.Get(wire.HeaderMsgID) != wire.MsgID(o, 99) {
		t.Fatalf("MsgID %q disagrees with the header", wire.MsgID(o, 99))
	}
	bm, err := wire.NewBatchMsg("outpost", o, []wire.Record{{Offset: 5}, {Offset: 8}})
	if err != nil {
		t.Fatal(err)
	}
	if id := bm.Header.Get(wire.HeaderMsgID); id != "farm/pi-1/a.b/3/5-8" || id != wire.BatchMsgID(o, 5, 8) {
		t.Fatalf("batch msg id %q", id)
	}
	got, err := wire.ParseMsg(m)
	if err != nil {
		t.Fatal(err)
	}
	if got.Origin != o || got.Batch || len(got.Records) != 1 {
		t.Fatalf("parsed %+v", got)
	}
	if err := sameRecord(r, got.Records[0]); err != nil {
		t.Fatal(err)
	}
}

// TestMsgRoundTripThroughJetStream sends both formats through a real server
// and reads them back with a consumer and with GetMsg: what the headers
// survive is decided by the server and nats.go, not by this package.
func TestMsgRoundTripThroughJetStream(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	st := natstest.CreateTopicStream(t, js, "outpost", "a.b", wire.TopicConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	o := wire.Origin{Site: "farm", Node: "pi-1", Topic: "a.b", Partition: 3}
	single := weirdRecord(5)
	batch := []wire.Record{weirdRecord(6), {Offset: 7}, {Offset: 9, Value: []byte("gap after retention")}}
	m1, err := wire.NewMsg("outpost", o, single)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := wire.NewBatchMsg("outpost", o, batch)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*nats.Msg{m1, m2} {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Resending the same messages is deduplicated by Nats-Msg-Id.
	for _, m := range []*nats.Msg{m1, m2} {
		ack, err := js.PublishMsg(ctx, m)
		if err != nil || !ack.Duplicate {
			t.Fatalf("resend: ack %+v, %v; want duplicate", ack, err)
		}
	}
	want := append([]wire.Record{single}, batch...)

	check := func(msgs []wire.Message) {
		t.Helper()
		var got []wire.Record
		for _, m := range msgs {
			if m.Origin != o {
				t.Fatalf("origin %+v", m.Origin)
			}
			got = append(got, m.Records...)
		}
		if len(got) != len(want) {
			t.Fatalf("got %d records, want %d", len(got), len(want))
		}
		for i := range want {
			if err := sameRecord(want[i], got[i]); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	}

	var viaGet []wire.Message
	for seq := uint64(1); seq <= 2; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		m, err := wire.Parse(raw.Header, raw.Data)
		if err != nil {
			t.Fatal(err)
		}
		viaGet = append(viaGet, m)
	}
	check(viaGet)
	if !viaGet[1].Batch || viaGet[0].Batch {
		t.Fatal("batch flag wrong")
	}

	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batchRes, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var viaConsumer []wire.Message
	for jm := range batchRes.Messages() {
		m, err := wire.Parse(jm.Headers(), jm.Data())
		if err != nil {
			t.Fatal(err)
		}
		viaConsumer = append(viaConsumer, m)
	}
	check(viaConsumer)
}

func TestParseRejects(t *testing.T) {
	o := wire.Origin{Site: "s", Node: "n", Topic: "t", Partition: 0}
	good, err := wire.NewBatchMsg("outpost", o, []wire.Record{{Offset: 1}, {Offset: 2}})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(m *nats.Msg){
		"no_partition":      func(m *nats.Msg) { m.Header.Del(wire.HeaderPartition) },
		"bad_site":          func(m *nats.Msg) { m.Header.Set(wire.HeaderSite, "a.b") },
		"no_offset":         func(m *nats.Msg) { m.Header.Del(wire.HeaderOffset) },
		"negative_offset":   func(m *nats.Msg) { m.Header.Set(wire.HeaderOffset, "-1") },
		"unknown_format":    func(m *nats.Msg) { m.Header.Set(wire.HeaderBatch, "zstd9") },
		"last_mismatch":     func(m *nats.Msg) { m.Header.Set(wire.HeaderLastOffset, "3") },
		"first_mismatch":    func(m *nats.Msg) { m.Header.Set(wire.HeaderOffset, "0") },
		"truncated_payload": func(m *nats.Msg) { m.Data = m.Data[:len(m.Data)-1] },
		"trailing_bytes":    func(m *nats.Msg) { m.Data = append(m.Data, 0xc0) },
		"empty_payload":     func(m *nats.Msg) { m.Data = nil },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			m := &nats.Msg{Subject: good.Subject, Header: nats.Header{}, Data: append([]byte(nil), good.Data...)}
			for k, v := range good.Header {
				m.Header[k] = append([]string(nil), v...)
			}
			mutate(m)
			if got, err := wire.ParseMsg(m); err == nil {
				t.Fatalf("accepted: %+v", got)
			}
		})
	}
	if _, err := wire.NewBatchMsg("outpost", o, []wire.Record{{Offset: 2}, {Offset: 2}}); err == nil {
		t.Fatal("batch with repeated offset accepted")
	}
	if _, err := wire.NewBatchMsg("outpost", o, nil); err == nil {
		t.Fatal("empty batch accepted")
	}
	if _, err := wire.NewMsg("outpost", o, wire.Record{Offset: -1}); err == nil {
		t.Fatal("negative offset accepted")
	}
}

func TestBatchRoundTripRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for iter := 0; iter < 200; iter++ {
		recs := randomRecords(rng, 1+rng.IntN(50))
		b, err := wire.EncodeBatch(recs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wire.DecodeBatch(b)
		if err != nil {
			t.Fatalf("seed %d iter %d: %v", seed, iter, err)
		}
		if len(got) != len(recs) {
			t.Fatalf("seed %d: %d records, want %d", seed, len(got), len(recs))
		}
		for i := range recs {
			if err := sameRecord(recs[i], got[i]); err != nil {
				t.Fatalf("seed %d iter %d record %d: %v", seed, iter, i, err)
			}
		}
	}
}

func randomBytes(rng *rand.Rand, max int) []byte {
	if rng.IntN(4) == 0 {
		return nil
	}
	b := make([]byte, rng.IntN(max+1))
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

func randomRecords(rng *rand.Rand, n int) []wire.Record {
	recs := make([]wire.Record, n)
	off := rng.Int64N(1 << 40)
	for i := range recs {
		off += 1 + rng.Int64N(3)
		r := wire.Record{Offset: off, Timestamp: rng.Int64() - rng.Int64(), Key: randomBytes(rng, 16), Value: randomBytes(rng, 200)}
		if rng.IntN(2) == 0 {
			r.MQTTTopic = string(randomBytes(rng, 20))
			r.SchemaID = rng.Int64N(1000)
		}
		for j := rng.IntN(4); j > 0; j-- {
			r.Headers = append(r.Headers, wire.Header{Key: string(randomBytes(rng, 8)), Value: randomBytes(rng, 8)})
		}
		recs[i] = r
	}
	return recs
}

func BenchmarkBatchCodec(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	recs := randomRecords(rng, 500)
	enc, _ := wire.EncodeBatch(recs)
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		buf := make([]byte, 0, len(enc))
		for b.Loop() {
			var err error
			if buf, err = wire.AppendBatch(buf[:0], recs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := wire.DecodeBatch(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncoderMsg(b *testing.B) {
	e, err := wire.NewEncoder("outpost", wire.Origin{Site: "farm", Node: "pi", Topic: "telemetry", Partition: 3})
	if err != nil {
		b.Fatal(err)
	}
	r := wire.Record{Offset: 123456, Timestamp: 1, Key: []byte("device-0001"), Value: make([]byte, 100),
		MQTTTopic: "farm/device-0001/temp", Headers: []wire.Header{{Key: "unit", Value: []byte("C")}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Msg(r); err != nil {
			b.Fatal(err)
		}
	}
}
