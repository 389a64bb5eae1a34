package schemacompile

import (
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/core/wire"
)

func registry(recs map[string]wire.SchemaRecord) Resolver {
	return func(r wire.SchemaReference) (wire.SchemaRecord, error) {
		rec, ok := recs[r.Subject]
		if !ok {
			return wire.SchemaRecord{}, errors.New("no such subject " + r.Subject)
		}
		return rec, nil
	}
}

// A reference cycle is refused, not followed forever; a resolver's own
// error passes unchanged (the registry keeps its 404 codes).
func TestCollectRefs(t *testing.T) {
	a := wire.SchemaReference{Name: "a.json", Subject: "a", Version: 1}
	b := wire.SchemaReference{Name: "b.json", Subject: "b", Version: 1}
	res := registry(map[string]wire.SchemaRecord{
		"a": {Type: wire.SchemaTypeJSON, Schema: `{}`, References: []wire.SchemaReference{b}},
		"b": {Type: wire.SchemaTypeJSON, Schema: `{}`, References: []wire.SchemaReference{a}},
	})
	_, err := CollectRefs([]wire.SchemaReference{a}, res)
	var ie *InvalidError
	if !errors.As(err, &ie) || !strings.Contains(ie.Msg, "cycle") {
		t.Fatalf("cycle: err %v, want an InvalidError naming the cycle", err)
	}
	_, err = CollectRefs([]wire.SchemaReference{{Name: "x", Subject: "missing", Version: 1}}, res)
	if err == nil || errors.As(err, &ie) {
		t.Fatalf("missing subject: err %v, want the resolver's error", err)
	}
}

// A $ref is served from the declared references only, never fetched; the
// referenced schema takes part in validation.
func TestJSONReferences(t *testing.T) {
	deps := []Ref{{Ref: wire.SchemaReference{Name: "unit.json", Subject: "unit", Version: 1},
		Rec: wire.SchemaRecord{Type: wire.SchemaTypeJSON, Schema: `{"type":"string","enum":["C","F"]}`}}}
	s, err := JSON(`{"type":"object","properties":{"u":{"$ref":"unit.json"}}}`, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(map[string]any{"u": "K"}); err == nil {
		t.Fatal("a value the referenced schema refuses was accepted")
	}
	if err := s.Validate(map[string]any{"u": "C"}); err != nil {
		t.Fatalf("valid value refused: %v", err)
	}
	_, err = JSON(`{"$ref":"https://example.com/remote.json"}`, nil)
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("undeclared remote $ref: err %v, want an InvalidError", err)
	}
}

func TestAvroRefsBeforeUse(t *testing.T) {
	deps := []Ref{{Ref: wire.SchemaReference{Name: "Unit", Subject: "unit", Version: 1},
		Rec: wire.SchemaRecord{Type: wire.SchemaTypeAvro, Schema: `{"type":"enum","name":"Unit","symbols":["C","F"]}`}}}
	if _, err := Avro(`{"type":"record","name":"R","fields":[{"name":"u","type":"Unit"}]}`, deps); err != nil {
		t.Fatalf("named type from a reference: %v", err)
	}
	if _, err := Avro(`{"type":"record","name":"R","fields":[{"name":"u","type":"Unit"}]}`, nil); err == nil {
		t.Fatal("undefined named type accepted")
	}
	json := []Ref{{Rec: wire.SchemaRecord{Type: wire.SchemaTypeJSON, Schema: `{}`}}}
	if _, err := Avro(`"string"`, json); err == nil {
		t.Fatal("a JSON schema as an Avro reference was accepted")
	}
}
