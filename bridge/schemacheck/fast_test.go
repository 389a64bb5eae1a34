package schemacheck

import (
	"bytes"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/outpost-edge/outpost/core/wire"
)

// fsSchema is firmware-sim's reading schema (payload.JSONSchema); the
// package does not import firmware-sim.
const fsSchema = `{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"firmware-sim reading","type":"object",
"required":["device","seq","ts","temperature","humidity","vibration","battery"],
"properties":{"device":{"type":"string","minLength":1},"seq":{"type":"integer","minimum":0},"ts":{"type":"integer"},
"temperature":{"type":"number","minimum":-60,"maximum":100},"humidity":{"type":"number","minimum":0,"maximum":100},
"vibration":{"type":"number","minimum":0,"maximum":50},"battery":{"type":"number","minimum":0,"maximum":100},"pad":{"type":"string"}}}`

var fastSchemas = []string{
	fsSchema,
	`{"type":"object","properties":{"a":{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10},"b":{"type":["string","null"],"maxLength":3},
"c":{"type":"object","properties":{"d":{"type":"boolean"}},"required":["d"],"additionalProperties":false},"e":true,"f":{}},"required":["a"],"additionalProperties":false}`,
	`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"x":{"type":"number","minimum":0.1,"maximum":0.3}}}`,
}

func fullValid(t testing.TB, text string, payload []byte) bool {
	c := compile(&wire.SchemaRecord{ID: 1, Type: wire.SchemaTypeJSON, Schema: text}, lookup{})
	if c.err != nil {
		t.Fatal(c.err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	return err == nil && c.json.Validate(doc) == nil
}

func TestFastPathDecisions(t *testing.T) {
	for i, s := range fastSchemas {
		if compileFast(s) == nil {
			t.Fatalf("schema %d: no fast path", i)
		}
	}
	for _, s := range []string{
		`{"type":"object","properties":{"a":{"type":"string","format":"email"}}}`,
		`{"type":"object","properties":{"a":{"$ref":"#/definitions/x"}},"definitions":{"x":{}}}`,
		`{"$schema":"http://json-schema.org/draft-04/schema#","type":"object","properties":{"a":{"minimum":1,"exclusiveMinimum":true}}}`,
		`{"type":"object","patternProperties":{"^a":{}}}`,
		`{"properties":{"a":{}}}`,
		`{"type":"object","properties":{"a":{"type":"string","pattern":"^x"}}}`,
	} {
		if compileFast(s) != nil {
			t.Fatalf("fast path for a schema outside the subset: %s", s)
		}
	}
	cases := []struct {
		schema  int
		payload string
		fast    bool // the fast path accepts it (else the full path decides)
	}{
		{0, `{"device":"d","seq":1,"ts":2,"temperature":21.5,"humidity":40,"vibration":0.1,"battery":87,"pad":"xx"}`, true},
		{0, ` {"device":"d","seq":1,"ts":2,"temperature":100,"humidity":0,"vibration":0,"battery":100} `, true},
		{0, `{"device":"d","seq":1,"ts":2,"temperature":100.0000000001,"humidity":0,"vibration":0,"battery":100}`, false},
		{0, `{"device":"","seq":1,"ts":2,"temperature":1,"humidity":0,"vibration":0,"battery":100}`, false},
		{0, `{"device":"d","seq":1.0,"ts":2,"temperature":1,"humidity":0,"vibration":0,"battery":100}`, false},
		{0, `{"device":"d\u0041","seq":1,"ts":2,"temperature":1,"humidity":0,"vibration":0,"battery":100}`, false},
		{0, `{"device":"d","seq":1,"ts":2,"temperature":1,"humidity":0,"vibration":0}`, false},
		{0, `{"device":"d","seq":1,"ts":2,"temperature":1,"humidity":0,"vibration":0,"battery":100,"extra":[1,{"a":null}]}`, true},
		{0, `{"device":"d","seq":1,"ts":2,"temperature":1,"humidity":0,"vibration":0,"battery":100} x`, false},
		{1, `{"a":5,"b":null,"c":{"d":true},"e":[1],"f":"x"}`, true},
		{1, `{"a":10}`, false},
		{1, `{"a":0}`, false},
		{1, `{"a":5,"b":"abcd"}`, false},
		{1, `{"a":5,"c":{"d":true,"z":1}}`, false},
		{1, `{"a":5,"zz":1}`, false},
		{1, `{"a":5,"a":50}`, false},
		{2, `{"x":0.2}`, true},
		{2, `{"x":0.1}`, false},
	}
	for _, c := range cases {
		f := compileFast(fastSchemas[c.schema])
		if got := f.valid([]byte(c.payload)); got != c.fast {
			t.Errorf("schema %d payload %s: fast %v, want %v", c.schema, c.payload, got, c.fast)
		}
		if c.fast && !fullValid(t, fastSchemas[c.schema], []byte(c.payload)) {
			t.Errorf("schema %d payload %s: fast path accepts what the full validator refuses", c.schema, c.payload)
		}
	}
}

// FuzzFastPathSound: whatever the payload, the fast path never accepts a
// payload the full validator refuses. CI runs the seeds; `go test -fuzz
// FuzzFastPathSound ./bridge/schemacheck` explores.
func FuzzFastPathSound(f *testing.F) {
	f.Add(uint8(0), []byte(`{"device":"d","seq":1,"ts":2,"temperature":21.5,"humidity":40,"vibration":0.1,"battery":87}`))
	f.Add(uint8(1), []byte(`{"a":5,"b":null,"c":{"d":true},"e":[1],"f":"x"}`))
	f.Add(uint8(2), []byte(`{"x":0.2000000001}`))
	f.Add(uint8(1), []byte(`{"a":9.99999999999,"c":{"d":false}}`))
	fasts := make([]*fastObject, len(fastSchemas))
	for i, s := range fastSchemas {
		fasts[i] = compileFast(s)
	}
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		i := int(which) % len(fastSchemas)
		if fasts[i].valid(payload) && !fullValid(t, fastSchemas[i], payload) {
			t.Fatalf("schema %d: fast path accepts %q, which the full validator refuses", i, payload)
		}
	})
}
