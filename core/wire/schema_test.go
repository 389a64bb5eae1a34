package wire

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestEscapeSubjectRoundTrip(t *testing.T) {
	for _, s := range []string{"temps-value", "a.b", "x=2E", "slash/in", "ünï", " ", "=", "a=", ":.ctx:s", "\x7f"} {
		esc := EscapeSubject(s)
		for _, c := range esc {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '=') {
				t.Fatalf("EscapeSubject(%q) = %q holds %q, not a KV key token character", s, esc, c)
			}
		}
		back, err := UnescapeSubject(esc)
		if err != nil || back != s {
			t.Fatalf("UnescapeSubject(%q) = %q, %v; want %q", esc, back, err, s)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		b := make([]byte, rng.IntN(20))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		if back, err := UnescapeSubject(EscapeSubject(string(b))); err != nil || back != string(b) {
			t.Fatalf("round trip of %q: %q %v", b, back, err)
		}
	}
	for _, bad := range []string{"a=", "a=4", "a=ZZ"} {
		if _, err := UnescapeSubject(bad); !errors.Is(err, ErrBadSchemaRecord) {
			t.Errorf("UnescapeSubject(%q): %v", bad, err)
		}
	}
	if EscapeSubject("orders.v1-value") != "orders=2Ev1-value" {
		t.Fatal(EscapeSubject("orders.v1-value"))
	}
}

func TestParseSchemaKey(t *testing.T) {
	cases := []struct {
		key     string
		kind    SchemaKeyKind
		id      int
		subject string
	}{
		{SchemaKeyNextID, SchemaKeyCounter, 0, ""},
		{SchemaIDKey(42), SchemaKeyID, 42, ""},
		{SchemaFingerprintKey("ab12"), SchemaKeyFingerprint, 0, "ab12"},
		{SchemaSubjectKey("a.b"), SchemaKeySubject, 0, "a.b"},
		{SchemaConfigKey(""), SchemaKeyConfig, 0, ""},
		{SchemaConfigKey("s"), SchemaKeyConfig, 0, "s"},
		{SchemaModeKey(""), SchemaKeyMode, 0, ""},
		{SchemaModeKey("s/t"), SchemaKeyMode, 0, "s/t"},
		{"future.key", SchemaKeyUnknown, 0, ""},
	}
	for _, c := range cases {
		kind, id, subject, err := ParseSchemaKey(c.key)
		if err != nil || kind != c.kind || id != c.id || subject != c.subject {
			t.Errorf("ParseSchemaKey(%q) = %v %d %q %v", c.key, kind, id, subject, err)
		}
	}
	for _, bad := range []string{"ids.0", "ids.01", "ids.x", "ids.99999999999", "subjects.a=Z"} {
		if _, _, _, err := ParseSchemaKey(bad); err == nil {
			t.Errorf("ParseSchemaKey(%q): no error", bad)
		}
	}
}

func TestDecodeSchemaValuesRefuseBadInput(t *testing.T) {
	good := `{"v":1,"subject":"s","versions":[{"version":1,"id":3},{"version":4,"id":3,"deleted":true}],"nextVersion":5}`
	r, err := DecodeSubjectRecord([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := r.Latest(); !ok || v.Version != 1 {
		t.Fatalf("Latest %+v %v", v, ok)
	}
	for name, b := range map[string]string{
		"not_json":         `{`,
		"future_format":    `{"v":2,"subject":"s","versions":[],"nextVersion":1}`,
		"unordered":        `{"v":1,"subject":"s","versions":[{"version":2,"id":1},{"version":1,"id":1}],"nextVersion":3}`,
		"past_next":        `{"v":1,"subject":"s","versions":[{"version":3,"id":1}],"nextVersion":3}`,
		"zero_id":          `{"v":1,"subject":"s","versions":[{"version":1,"id":0}],"nextVersion":2}`,
		"control_in_subj":  `{"v":1,"subject":"a\u0001","versions":[],"nextVersion":1}`,
		"empty_subject":    `{"v":1,"subject":"","versions":[],"nextVersion":1}`,
		"oversize_subject": `{"v":1,"subject":"` + strings.Repeat("s", MaxSubjectLen+1) + `","versions":[],"nextVersion":1}`,
	} {
		if _, err := DecodeSubjectRecord([]byte(b)); !errors.Is(err, ErrBadSchemaRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, b := range map[string]string{
		"bad_type": `{"v":1,"id":1,"schemaType":"XML","schema":"x"}`,
		"zero_id":  `{"v":1,"id":0,"schemaType":"JSON","schema":"{}"}`,
		"format":   `{"v":0,"id":1,"schemaType":"JSON","schema":"{}"}`,
	} {
		if _, err := DecodeSchemaRecord([]byte(b)); !errors.Is(err, ErrBadSchemaRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSchemaFingerprintSeparatesFields(t *testing.T) {
	a := SchemaFingerprint("JSON", `{"a":1}`, nil)
	if a != SchemaFingerprint("JSON", `{"a":1}`, []SchemaReference{}) {
		t.Fatal("nil and empty references differ")
	}
	for _, other := range []string{
		SchemaFingerprint("AVRO", `{"a":1}`, nil),
		SchemaFingerprint("JSON", `{"a":2}`, nil),
		SchemaFingerprint("JSON", `{"a":1}`, []SchemaReference{{Name: "n", Subject: "s", Version: 1}}),
		SchemaFingerprint("JSO", `N{"a":1}`, nil),
	} {
		if other == a {
			t.Fatal("different inputs, same fingerprint")
		}
	}
}
