package schema

import (
	"errors"
	"strings"

	"github.com/twmb/avro"
)

// avroCanRead applies the Avro specification's schema resolution rules
// (field defaults, aliases, promotions int->long->float->double and
// string<->bytes, enum symbols and defaults, unions, fixed sizes) through
// twmb/avro's CheckCompatibility. It stops at the first incompatibility.
func avroCanRead(reader, writer *avro.Schema) []incompat {
	err := avro.CheckCompatibility(writer, reader)
	if err == nil {
		return nil
	}
	var ce *avro.CompatibilityError
	if errors.As(err, &ce) {
		return []incompat{{"AVRO_" + avroRule(ce.Detail), ce.Path, "reader " + ce.ReaderType + " vs writer " + ce.WriterType + ": " + ce.Detail}}
	}
	return []incompat{{"AVRO_INCOMPATIBLE", "", err.Error()}}
}

// avroRule names an incompatibility from twmb/avro's detail text, in the
// style of Avro Java's SchemaIncompatibilityType (which Confluent reports).
func avroRule(detail string) string {
	switch {
	case strings.Contains(detail, "enum symbol"):
		return "MISSING_ENUM_SYMBOLS"
	case strings.Contains(detail, "names do not match"):
		return "NAME_MISMATCH"
	case strings.Contains(detail, "fixed sizes"):
		return "FIXED_SIZE_MISMATCH"
	case strings.Contains(detail, "union"):
		return "MISSING_UNION_BRANCH"
	case strings.Contains(detail, "no default"):
		return "READER_FIELD_MISSING_DEFAULT_VALUE"
	}
	return "TYPE_MISMATCH"
}
