package payload_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/outpost-edge/outpost/firmware-sim/payload"
)

func sample() payload.Reading {
	return payload.Reading{Device: "site1-dev-0042", Seq: 1234567, TS: 1763860500123,
		Temperature: 21.25, Humidity: 45.5, Vibration: 0.012, Battery: 87.5}
}

func TestRoundTrip(t *testing.T) {
	for _, f := range []payload.Format{payload.JSON, payload.MsgPack, payload.Raw} {
		for _, size := range []int{0, 40, 100, 200, 300, 1000, 70000} {
			t.Run(f.String(), func(t *testing.T) {
				r := sample()
				b := payload.Append(nil, f, &r, size)
				if size > 120 && len(b) != size {
					t.Fatalf("size %d: got %d bytes", size, len(b))
				}
				got, err := payload.Decode(b)
				if err != nil {
					t.Fatalf("size %d: decode: %v\n%q", size, err, b)
				}
				if got.Device != r.Device || got.Seq != r.Seq || got.TS != r.TS {
					t.Fatalf("size %d: got %+v, want %+v", size, got, r)
				}
				if d := got.Temperature - r.Temperature; d > 0.01 || d < -0.01 {
					t.Fatalf("temperature %v, want %v", got.Temperature, r.Temperature)
				}
			})
		}
	}
}

func TestRawExactSize(t *testing.T) {
	r := sample()
	if b := payload.Append(nil, payload.Raw, &r, 100); len(b) != 100 {
		t.Fatalf("raw: %d bytes, want 100", len(b))
	}
}

func TestBadPayloads(t *testing.T) {
	r := sample()
	for _, f := range []payload.Format{payload.JSON, payload.MsgPack, payload.Raw} {
		if _, err := payload.Decode(payload.AppendMalformed(nil, f, &r, 100)); !errors.Is(err, payload.ErrMalformed) {
			t.Errorf("%v malformed: err=%v, want ErrMalformed", f, err)
		}
		want := payload.ErrSchema
		if f == payload.Raw {
			want = payload.ErrMalformed
		}
		if _, err := payload.Decode(payload.AppendSchemaViolation(nil, f, &r, 100)); !errors.Is(err, want) {
			t.Errorf("%v schema violation: err=%v, want %v", f, err, want)
		}
	}
	for name, b := range map[string]string{
		"empty":        "",
		"trailing":     `{"device":"a","seq":1,"ts":1,"temperature":1,"humidity":1,"vibration":1,"battery":1} {}`,
		"binary":       "\x00\x01",
		"short_raw":    "FSR1\x00",
		"neg_seq":      `{"device":"a","seq":-1,"ts":1,"temperature":1,"humidity":1,"vibration":1,"battery":1}`,
		"float_seq":    `{"device":"a","seq":1.5,"ts":1,"temperature":1,"humidity":1,"vibration":1,"battery":1}`,
		"missing_batt": `{"device":"a","seq":1,"ts":1,"temperature":1,"humidity":1,"vibration":1}`,
		"hot":          `{"device":"a","seq":1,"ts":1,"temperature":1000,"humidity":1,"vibration":1,"battery":1}`,
	} {
		if _, err := payload.Decode([]byte(b)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestModelInSchema(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	m := payload.NewModel(rand.New(rand.NewPCG(seed, 1)))
	for i := range 20000 {
		r := payload.Reading{Device: "d", Seq: int64(i), TS: 1}
		m.Next(&r)
		if _, err := payload.Decode(payload.Append(nil, payload.JSON, &r, 0)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	r := sample()
	for _, fm := range []payload.Format{payload.JSON, payload.MsgPack, payload.Raw} {
		f.Add(payload.Append(nil, fm, &r, 0))
		f.Add(payload.AppendMalformed(nil, fm, &r, 0))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = payload.Decode(b)
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	r := sample()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = payload.Append(buf[:0], payload.JSON, &r, 100)
	}
}
