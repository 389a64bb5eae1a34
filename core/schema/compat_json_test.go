package schema

import (
	"testing"

	"github.com/outpost-edge/outpost/core/wire"
)

func mustParse(t testing.TB, typ, text string) *parsed {
	t.Helper()
	c, err := compactText(text, false)
	if err != nil {
		t.Fatalf("compact %s: %v", text, err)
	}
	p, err := parse(typ, c, nil, func(r wire.SchemaReference) (wire.SchemaRecord, error) {
		return wire.SchemaRecord{}, errorf(ErrSchemaNotFound, "no references in this test")
	})
	if err != nil {
		t.Fatalf("parse %s: %v", text, err)
	}
	return p
}

// jsonCase: can a reader with schema reader read documents a writer with
// schema writer produced? want is "" for compatible, else the rule that
// must be reported.
type jsonCase struct {
	name           string
	writer, reader string
	want           string
}

// jsonCases has one row per rule (Confluent's difference types, Karapace's
// checks), each with the compatible direction next to it where one exists.
var jsonCases = []jsonCase{
	// Types.
	{"type_same", `{"type":"string"}`, `{"type":"string"}`, ""},
	{"type_changed", `{"type":"string"}`, `{"type":"integer"}`, "TYPE_CHANGED"},
	{"type_extended_integer_to_number", `{"type":"integer"}`, `{"type":"number"}`, ""},
	{"type_narrowed_number_to_integer", `{"type":"number"}`, `{"type":"integer"}`, "TYPE_NARROWED"},
	{"type_list_extended", `{"type":"string"}`, `{"type":["string","null"]}`, ""},
	{"type_list_narrowed", `{"type":["string","null"]}`, `{"type":"string"}`, "TYPE_CHANGED"},
	{"type_added_to_any", `{}`, `{"type":"string"}`, "TYPE_CHANGED"},
	{"type_removed_reader_accepts_all", `{"type":"string","maxLength":3}`, `{}`, ""},
	{"reader_true", `{"type":"object"}`, `true`, ""},
	{"reader_false", `{"type":"object"}`, `false`, "SCHEMA_REMOVED"},
	{"writer_false", `false`, `{"type":"string"}`, ""},
	{"enum_writer_typed_by_values", `{"enum":["a","b"]}`, `{"type":"string"}`, ""},

	// Enum and const.
	{"enum_extended", `{"type":"string","enum":["a","b"]}`, `{"type":"string","enum":["a","b","c"]}`, ""},
	{"enum_narrowed", `{"type":"string","enum":["a","b"]}`, `{"type":"string","enum":["a"]}`, "ENUM_ARRAY_NARROWED"},
	{"enum_added", `{"type":"string"}`, `{"type":"string","enum":["a"]}`, "ENUM_ARRAY_ADDED"},
	{"enum_removed", `{"type":"string","enum":["a"]}`, `{"type":"string"}`, ""},
	{"const_in_enum", `{"const":"a"}`, `{"enum":["a","b"]}`, ""},
	{"const_changed", `{"const":"a"}`, `{"const":"b"}`, "ENUM_ARRAY_NARROWED"},

	// String.
	{"max_length_added", `{"type":"string"}`, `{"type":"string","maxLength":5}`, "MAX_LENGTH_ADDED"},
	{"max_length_decreased", `{"type":"string","maxLength":10}`, `{"type":"string","maxLength":5}`, "MAX_LENGTH_DECREASED"},
	{"max_length_increased", `{"type":"string","maxLength":5}`, `{"type":"string","maxLength":10}`, ""},
	{"max_length_removed", `{"type":"string","maxLength":5}`, `{"type":"string"}`, ""},
	{"min_length_added", `{"type":"string"}`, `{"type":"string","minLength":1}`, "MIN_LENGTH_ADDED"},
	{"min_length_increased", `{"type":"string","minLength":1}`, `{"type":"string","minLength":2}`, "MIN_LENGTH_INCREASED"},
	{"min_length_decreased", `{"type":"string","minLength":2}`, `{"type":"string","minLength":1}`, ""},
	{"pattern_added", `{"type":"string"}`, `{"type":"string","pattern":"^a"}`, "PATTERN_ADDED"},
	{"pattern_changed", `{"type":"string","pattern":"^a"}`, `{"type":"string","pattern":"^b"}`, "PATTERN_CHANGED"},
	{"pattern_removed", `{"type":"string","pattern":"^a"}`, `{"type":"string"}`, ""},

	// Numbers.
	{"maximum_added", `{"type":"number"}`, `{"type":"number","maximum":10}`, "MAXIMUM_ADDED"},
	{"maximum_decreased", `{"type":"number","maximum":10}`, `{"type":"number","maximum":5}`, "MAXIMUM_DECREASED"},
	{"maximum_increased", `{"type":"number","maximum":5}`, `{"type":"number","maximum":10}`, ""},
	{"minimum_added", `{"type":"number"}`, `{"type":"number","minimum":0}`, "MINIMUM_ADDED"},
	{"minimum_increased", `{"type":"number","minimum":0}`, `{"type":"number","minimum":1.5}`, "MINIMUM_INCREASED"},
	{"minimum_decreased", `{"type":"number","minimum":1}`, `{"type":"number","minimum":0}`, ""},
	{"exclusive_maximum_decreased", `{"type":"number","exclusiveMaximum":10}`, `{"type":"number","exclusiveMaximum":9}`, "EXCLUSIVE_MAXIMUM_DECREASED"},
	{"exclusive_minimum_increased", `{"type":"number","exclusiveMinimum":0}`, `{"type":"number","exclusiveMinimum":1}`, "EXCLUSIVE_MINIMUM_INCREASED"},
	{"exclusive_maximum_draft4_boolean", `{"$schema":"http://json-schema.org/draft-04/schema#","type":"number","maximum":10}`, `{"$schema":"http://json-schema.org/draft-04/schema#","type":"number","maximum":10,"exclusiveMaximum":true}`, "EXCLUSIVE_MAXIMUM_ADDED"},
	{"multiple_of_added", `{"type":"integer"}`, `{"type":"integer","multipleOf":2}`, "MULTIPLE_OF_ADDED"},
	{"multiple_of_divisor", `{"type":"integer","multipleOf":4}`, `{"type":"integer","multipleOf":2}`, ""},
	{"multiple_of_expanded", `{"type":"integer","multipleOf":2}`, `{"type":"integer","multipleOf":4}`, "MULTIPLE_OF_CHANGED"},
	{"multiple_of_changed", `{"type":"integer","multipleOf":4}`, `{"type":"integer","multipleOf":3}`, "MULTIPLE_OF_CHANGED"},

	// Objects: open content model (additionalProperties absent or true).
	{"open_property_removed", `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"string"}}}`, ""},
	{"open_property_added", `{"type":"object","properties":{"a":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}}}`, "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"},
	{"open_property_added_unconstrained", `{"type":"object","properties":{}}`, `{"type":"object","properties":{"b":{}}}`, ""},
	{"property_type_changed", `{"type":"object","properties":{"a":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"boolean"}}}`, "TYPE_CHANGED"},
	// Closed content model (additionalProperties false).
	{"closed_property_added", `{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`, `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}`, ""},
	{"closed_property_removed", `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}`, `{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
	{"closed_required_added", `{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`, `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"required":["b"],"additionalProperties":false}`, "REQUIRED_PROPERTY_ADDED"},
	{"closed_required_with_default_added", `{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`, `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string","default":"x"}},"required":["b"],"additionalProperties":false}`, ""},
	{"required_became", `{"type":"object","properties":{"a":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`, "REQUIRED_PROPERTY_ADDED"},
	{"required_removed", `{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`, `{"type":"object","properties":{"a":{"type":"string"}}}`, ""},
	// Partially open content model (additionalProperties a schema, or
	// patternProperties).
	{"partial_property_added_covered", `{"type":"object","properties":{},"additionalProperties":{"type":"string"}}`, `{"type":"object","properties":{"b":{"type":"string"}},"additionalProperties":{"type":"string"}}`, ""},
	{"partial_property_added_not_covered", `{"type":"object","properties":{},"additionalProperties":{"type":"string"}}`, `{"type":"object","properties":{"b":{"type":"integer"}},"additionalProperties":{"type":"string"}}`, "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"},
	{"partial_property_removed_covered", `{"type":"object","properties":{"b":{"type":"string"}},"additionalProperties":{"type":"string"}}`, `{"type":"object","properties":{},"additionalProperties":{"type":"string"}}`, ""},
	{"partial_property_removed_not_covered", `{"type":"object","properties":{"b":{"type":"integer"}},"additionalProperties":{"type":"string"}}`, `{"type":"object","properties":{},"additionalProperties":{"type":"string"}}`, "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"},
	{"pattern_property_covers_added", `{"type":"object","patternProperties":{"^s_":{"type":"string"}},"additionalProperties":false}`, `{"type":"object","properties":{"s_x":{"type":"string"}},"patternProperties":{"^s_":{"type":"string"}},"additionalProperties":false}`, ""},
	{"pattern_property_removed_not_covered", `{"type":"object","properties":{"n_x":{"type":"integer"}},"patternProperties":{"^s_":{"type":"string"}},"additionalProperties":false}`, `{"type":"object","patternProperties":{"^s_":{"type":"string"}},"additionalProperties":false}`, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
	{"pattern_properties_added_to_open", `{"type":"object"}`, `{"type":"object","patternProperties":{"^s_":{"type":"string"}}}`, "PATTERN_PROPERTIES_ADDED"},
	{"additional_properties_narrowed", `{"type":"object"}`, `{"type":"object","additionalProperties":false}`, "ADDITIONAL_PROPERTIES_NARROWED"},
	{"additional_properties_extended", `{"type":"object","additionalProperties":false}`, `{"type":"object"}`, ""},
	{"additional_properties_schema_closed", `{"type":"object","additionalProperties":{"type":"string"}}`, `{"type":"object","additionalProperties":false}`, "ADDITIONAL_PROPERTIES_REMOVED"},
	{"additional_properties_schema_changed", `{"type":"object","additionalProperties":{"type":"string"}}`, `{"type":"object","additionalProperties":{"type":"integer"}}`, "TYPE_CHANGED"},
	{"max_properties_added", `{"type":"object"}`, `{"type":"object","maxProperties":3}`, "MAX_PROPERTIES_ADDED"},
	{"min_properties_increased", `{"type":"object","minProperties":1}`, `{"type":"object","minProperties":2}`, "MIN_PROPERTIES_INCREASED"},
	{"dependency_array_added", `{"type":"object"}`, `{"type":"object","dependencies":{"a":["b"]}}`, "DEPENDENCY_ARRAY_ADDED"},
	{"dependency_array_extended", `{"type":"object","dependencies":{"a":["b"]}}`, `{"type":"object","dependencies":{"a":["b","c"]}}`, "DEPENDENCY_ARRAY_EXTENDED"},
	{"dependency_array_narrowed", `{"type":"object","dependencies":{"a":["b","c"]}}`, `{"type":"object","dependencies":{"a":["b"]}}`, ""},
	{"dependent_required_2020", `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}`, `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","dependentRequired":{"a":["b"]}}`, "DEPENDENCY_ARRAY_ADDED"},
	{"dependency_schema_added", `{"type":"object"}`, `{"type":"object","dependencies":{"a":{"required":["b"]}}}`, "DEPENDENCY_SCHEMA_ADDED"},
	{"property_names_added", `{"type":"object"}`, `{"type":"object","propertyNames":{"maxLength":3}}`, "PROPERTY_NAMES_ADDED"},

	// Arrays.
	{"items_changed", `{"type":"array","items":{"type":"string"}}`, `{"type":"array","items":{"type":"integer"}}`, "TYPE_CHANGED"},
	{"items_added", `{"type":"array"}`, `{"type":"array","items":{"type":"string"}}`, "ITEM_ADDED_TO_OPEN_CONTENT_MODEL"},
	{"items_removed", `{"type":"array","items":{"type":"string"}}`, `{"type":"array"}`, ""},
	{"tuple_item_added_open", `{"type":"array","items":[{"type":"string"}]}`, `{"type":"array","items":[{"type":"string"},{"type":"integer"}]}`, "ITEM_ADDED_TO_OPEN_CONTENT_MODEL"},
	{"tuple_item_added_closed", `{"type":"array","items":[{"type":"string"}],"additionalItems":false}`, `{"type":"array","items":[{"type":"string"},{"type":"integer"}],"additionalItems":false}`, ""},
	{"tuple_item_removed_closed", `{"type":"array","items":[{"type":"string"},{"type":"integer"}]}`, `{"type":"array","items":[{"type":"string"}],"additionalItems":false}`, "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
	{"tuple_item_removed_open", `{"type":"array","items":[{"type":"string"},{"type":"integer"}]}`, `{"type":"array","items":[{"type":"string"}]}`, ""},
	{"tuple_item_removed_partial", `{"type":"array","items":[{"type":"string"},{"type":"integer"}]}`, `{"type":"array","items":[{"type":"string"}],"additionalItems":{"type":"string"}}`, "TYPE_CHANGED"},
	{"prefix_items_2020", `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":false}`, `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}`, ""},
	{"additional_items_narrowed", `{"type":"array","items":[{"type":"string"}]}`, `{"type":"array","items":[{"type":"string"}],"additionalItems":false}`, "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
	{"max_items_added", `{"type":"array"}`, `{"type":"array","maxItems":3}`, "MAX_ITEMS_ADDED"},
	{"max_items_increased", `{"type":"array","maxItems":3}`, `{"type":"array","maxItems":4}`, ""},
	{"min_items_increased", `{"type":"array","minItems":1}`, `{"type":"array","minItems":2}`, "MIN_ITEMS_INCREASED"},
	{"unique_items_added", `{"type":"array"}`, `{"type":"array","uniqueItems":true}`, "UNIQUE_ITEMS_ADDED"},
	{"unique_items_removed", `{"type":"array","uniqueItems":true}`, `{"type":"array"}`, ""},
	{"contains_added", `{"type":"array"}`, `{"type":"array","contains":{"type":"string"}}`, "CONTAINS_ADDED"},

	// Combined schemas.
	{"sum_type_extended", `{"oneOf":[{"type":"string"},{"type":"integer"}]}`, `{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"boolean"}]}`, ""},
	{"sum_type_narrowed", `{"oneOf":[{"type":"string"},{"type":"integer"}]}`, `{"oneOf":[{"type":"string"}]}`, "SUM_TYPE_NARROWED"},
	{"any_of_narrowed", `{"anyOf":[{"type":"string"},{"type":"integer"}]}`, `{"anyOf":[{"type":"string"}]}`, "SUM_TYPE_NARROWED"},
	{"one_of_to_any_of", `{"oneOf":[{"type":"string"},{"type":"integer"}]}`, `{"anyOf":[{"type":"string"},{"type":"integer"}]}`, ""},
	{"any_of_to_one_of", `{"anyOf":[{"type":"string"},{"type":"integer"}]}`, `{"oneOf":[{"type":"string"},{"type":"integer"}]}`, "COMBINED_TYPE_CHANGED"},
	{"sum_type_reordered", `{"oneOf":[{"type":"string"},{"type":"integer"}]}`, `{"oneOf":[{"type":"integer"},{"type":"string"}]}`, ""},
	{"writer_plain_reader_sum", `{"type":"string"}`, `{"anyOf":[{"type":"integer"},{"type":"string"}]}`, ""},
	{"writer_plain_reader_sum_missing", `{"type":"string"}`, `{"anyOf":[{"type":"integer"},{"type":"boolean"}]}`, "SUM_TYPE_NARROWED"},
	{"writer_sum_reader_plain", `{"anyOf":[{"type":"integer"},{"type":"string"}]}`, `{"type":"string"}`, "TYPE_CHANGED"},
	{"product_type_extended", `{"allOf":[{"type":"object","properties":{"a":{"type":"string"}}}]}`, `{"allOf":[{"type":"object","properties":{"a":{"type":"string"}}},{"required":["a"]}]}`, "REQUIRED_PROPERTY_ADDED"},
	{"product_type_narrowed", `{"allOf":[{"type":"object","properties":{"a":{"type":"string"}}},{"required":["a"]}]}`, `{"allOf":[{"type":"object","properties":{"a":{"type":"string"}}}]}`, ""},
	{"sum_alternative_inherits_siblings", `{"type":"object","properties":{"a":{"type":"string"}},"anyOf":[{"required":["a"]},{"properties":{"a":{"maxLength":1}}}]}`, `{"type":"object","properties":{"a":{"type":"string"}}}`, ""},
	{"sibling_keywords_checked", `{"type":"object","properties":{"a":{"type":"string"}},"oneOf":[{"required":["a"]}]}`, `{"type":"object","properties":{"a":{"type":"integer"}},"oneOf":[{"required":["a"]}]}`, "TYPE_CHANGED"},
	{"not_added", `{"type":"string"}`, `{"type":"string","not":{"enum":["x"]}}`, "NOT_TYPE_ADDED"},
	{"not_extended", `{"type":"string","not":{"enum":["x"]}}`, `{"type":"string","not":{"enum":["x","y"]}}`, "NOT_TYPE_EXTENDED"},
	{"not_narrowed", `{"type":"string","not":{"enum":["x","y"]}}`, `{"type":"string","not":{"enum":["x"]}}`, ""},
	{"conditional_added", `{"type":"object"}`, `{"type":"object","if":{"required":["a"]},"then":{"required":["b"]}}`, "CONDITIONAL_ADDED"},
	{"conditional_then_relaxed", `{"type":"object","if":{"required":["a"]},"then":{"required":["b"]}}`, `{"type":"object","if":{"required":["a"]},"then":{}}`, ""},

	// References and recursion.
	{"local_ref_changed", `{"type":"object","properties":{"a":{"$ref":"#/definitions/t"}},"definitions":{"t":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"$ref":"#/definitions/t"}},"definitions":{"t":{"type":"integer"}}}`, "TYPE_CHANGED"},
	{"local_ref_inlined", `{"type":"object","properties":{"a":{"$ref":"#/definitions/t"}},"definitions":{"t":{"type":"string"}}}`, `{"type":"object","properties":{"a":{"type":"string"}}}`, ""},
	{"recursive_same_shape", `{"type":"object","properties":{"next":{"$ref":"#"},"v":{"type":"string"}}}`, `{"type":"object","properties":{"next":{"$ref":"#"},"v":{"type":"string"}}}`, ""},
	{"recursive_changed", `{"type":"object","properties":{"next":{"$ref":"#"},"v":{"type":"string"}},"additionalProperties":false}`, `{"type":"object","properties":{"next":{"$ref":"#"}},"additionalProperties":false}`, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
	{"unsupported_keyword_fails_closed", `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}`, `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","unevaluatedProperties":false}`, "UNSUPPORTED_KEYWORD"},

	// Drafts: each one Confluent accepts parses and compares.
	{"draft6", `{"$schema":"http://json-schema.org/draft-06/schema#","type":"object","properties":{"a":{"const":1}}}`, `{"$schema":"http://json-schema.org/draft-06/schema#","type":"object","properties":{"a":{"enum":[1,2]}}}`, ""},
	{"draft2019", `{"$schema":"https://json-schema.org/draft/2019-09/schema","type":"string","maxLength":4}`, `{"$schema":"https://json-schema.org/draft/2019-09/schema","type":"string","maxLength":3}`, "MAX_LENGTH_DECREASED"},
}

func TestJSONCompatibilityRules(t *testing.T) {
	for _, c := range jsonCases {
		t.Run(c.name, func(t *testing.T) {
			w := mustParse(t, wire.SchemaTypeJSON, c.writer)
			r := mustParse(t, wire.SchemaTypeJSON, c.reader)
			got := canRead(r, w)
			if c.want == "" {
				if len(got) > 0 {
					t.Fatalf("want compatible, got %v", got)
				}
				return
			}
			for _, in := range got {
				if in.rule == c.want {
					return
				}
			}
			t.Fatalf("want %s, got %v", c.want, got)
		})
	}
}

// TestJSONCompatibilityOfIdenticalSchemas: every schema in the table reads
// itself, including the ones using keywords the check does not compare.
func TestJSONCompatibilityOfIdenticalSchemas(t *testing.T) {
	for _, c := range jsonCases {
		for _, s := range []string{c.writer, c.reader} {
			if got := canRead(mustParse(t, wire.SchemaTypeJSON, s), mustParse(t, wire.SchemaTypeJSON, s)); len(got) > 0 {
				t.Errorf("%s: %s does not read itself: %v", c.name, s, got)
			}
		}
	}
}

// TestJSONCompatibilityBoundedWork: nested anyOf against anyOf would take
// exponential time; the check stops and fails closed instead.
func TestJSONCompatibilityBoundedWork(t *testing.T) {
	leaf := `{"type":"string"}`
	a, b := leaf, leaf
	for i := 0; i < 10; i++ { // about 4^10 comparisons, far past the bound
		a = `{"anyOf":[` + a + `,` + a + `,{"type":"integer","maximum":` + string(rune('0'+i%10)) + `}]}`
		b = `{"anyOf":[` + b + `,` + b + `,{"type":"integer","minimum":` + string(rune('0'+i%10)) + `}]}`
	}
	got := canRead(mustParse(t, wire.SchemaTypeJSON, a), mustParse(t, wire.SchemaTypeJSON, b))
	for _, in := range got {
		if in.rule == "SCHEMA_TOO_COMPLEX" {
			return
		}
	}
	t.Fatalf("want SCHEMA_TOO_COMPLEX, got %d reasons", len(got))
}
