package schema

import (
	"testing"

	"github.com/outpost-edge/outpost/core/wire"
)

func rec(fields string) string {
	return `{"type":"record","name":"Reading","namespace":"outpost","fields":[` + fields + `]}`
}

// avroCases: can a reader with schema reader read data written with
// schema writer, by the Avro specification's schema resolution rules? One
// row per rule, with the compatible direction next to it where one exists.
var avroCases = []struct {
	name           string
	writer, reader string
	want           string // "" compatible, else the reported rule
}{
	{"same", rec(`{"name":"a","type":"int"}`), rec(`{"name":"a","type":"int"}`), ""},
	{"field_added_with_default", rec(`{"name":"a","type":"int"}`), rec(`{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}`), ""},
	{"field_added_without_default", rec(`{"name":"a","type":"int"}`), rec(`{"name":"a","type":"int"},{"name":"b","type":"string"}`), "AVRO_READER_FIELD_MISSING_DEFAULT_VALUE"},
	{"field_removed", rec(`{"name":"a","type":"int"},{"name":"b","type":"string"}`), rec(`{"name":"a","type":"int"}`), ""},
	{"promote_int_long", rec(`{"name":"a","type":"int"}`), rec(`{"name":"a","type":"long"}`), ""},
	{"promote_long_double", rec(`{"name":"a","type":"long"}`), rec(`{"name":"a","type":"double"}`), ""},
	{"promote_string_bytes", rec(`{"name":"a","type":"string"}`), rec(`{"name":"a","type":"bytes"}`), ""},
	{"demote_long_int", rec(`{"name":"a","type":"long"}`), rec(`{"name":"a","type":"int"}`), "AVRO_TYPE_MISMATCH"},
	{"type_changed", rec(`{"name":"a","type":"int"}`), rec(`{"name":"a","type":"string"}`), "AVRO_TYPE_MISMATCH"},
	{"record_renamed", `{"type":"record","name":"A","fields":[]}`, `{"type":"record","name":"B","fields":[]}`, "AVRO_NAME_MISMATCH"},
	{"record_renamed_with_alias", `{"type":"record","name":"A","fields":[]}`, `{"type":"record","name":"B","aliases":["A"],"fields":[]}`, ""},
	{"field_renamed_with_alias", rec(`{"name":"a","type":"int"}`), rec(`{"name":"b","aliases":["a"],"type":"int"}`), ""},
	{"enum_symbol_added", `{"type":"enum","name":"E","symbols":["A","B"]}`, `{"type":"enum","name":"E","symbols":["A","B","C"]}`, ""},
	{"enum_symbol_removed", `{"type":"enum","name":"E","symbols":["A","B"]}`, `{"type":"enum","name":"E","symbols":["A"]}`, "AVRO_MISSING_ENUM_SYMBOLS"},
	{"enum_symbol_removed_with_default", `{"type":"enum","name":"E","symbols":["A","B"]}`, `{"type":"enum","name":"E","symbols":["A"],"default":"A"}`, ""},
	{"union_branch_added", `["null","string"]`, `["null","string","int"]`, ""},
	{"union_branch_removed", `["null","string","int"]`, `["null","string"]`, "AVRO_MISSING_UNION_BRANCH"},
	{"plain_to_union", `"string"`, `["null","string"]`, ""},
	{"union_to_plain", `["null","string"]`, `"string"`, "AVRO_TYPE_MISMATCH"},
	{"fixed_size_changed", `{"type":"fixed","name":"F","size":4}`, `{"type":"fixed","name":"F","size":8}`, "AVRO_FIXED_SIZE_MISMATCH"},
	{"array_items_promoted", `{"type":"array","items":"int"}`, `{"type":"array","items":"long"}`, ""},
	{"map_values_changed", `{"type":"map","values":"int"}`, `{"type":"map","values":"string"}`, "AVRO_TYPE_MISMATCH"},
	{"nested_record_field_added", rec(`{"name":"loc","type":{"type":"record","name":"Loc","fields":[{"name":"lat","type":"double"}]}}`), rec(`{"name":"loc","type":{"type":"record","name":"Loc","fields":[{"name":"lat","type":"double"},{"name":"lon","type":"double"}]}}`), "AVRO_READER_FIELD_MISSING_DEFAULT_VALUE"},
}

func TestAvroCompatibilityRules(t *testing.T) {
	for _, c := range avroCases {
		t.Run(c.name, func(t *testing.T) {
			got := canRead(mustParse(t, wire.SchemaTypeAvro, c.reader), mustParse(t, wire.SchemaTypeAvro, c.writer))
			if c.want == "" {
				if len(got) > 0 {
					t.Fatalf("want compatible, got %v", got)
				}
				return
			}
			if len(got) == 0 || got[0].rule != c.want {
				t.Fatalf("want %s, got %v", c.want, got)
			}
		})
	}
}
