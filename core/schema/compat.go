package schema

import (
	"fmt"
	"slices"
)

// version is one live version of a subject, parsed, for compatibility
// checks.
type version struct {
	version int
	id      int
	schema  *parsed
}

// checkCompat returns why candidate may not follow the live versions
// (oldest first) under level; empty means compatible. It is a pure
// function of its arguments. BACKWARD checks that candidate reads data
// written with an old schema, FORWARD that an old schema reads data
// written with candidate, FULL both; the transitive levels check every
// live version, the others only the latest.
func checkCompat(level Level, candidate *parsed, live []version) []string {
	if level == LevelNone || len(live) == 0 {
		return nil
	}
	against := live
	if !level.transitive() {
		against = live[len(live)-1:]
	}
	var msgs []string
	for _, old := range slices.Backward(against) {
		if level.backward() {
			for _, in := range canRead(candidate, old.schema) {
				msgs = append(msgs, fmt.Sprintf("%s (the new schema cannot read data written with version %d, id %d)", in, old.version, old.id))
			}
		}
		if level.forward() {
			for _, in := range canRead(old.schema, candidate) {
				msgs = append(msgs, fmt.Sprintf("%s (version %d, id %d, cannot read data written with the new schema)", in, old.version, old.id))
			}
		}
	}
	if len(msgs) > 0 {
		msgs = append(msgs, fmt.Sprintf("{compatibility: '%s'}", level))
	}
	return msgs
}

// canRead returns why a consumer with reader cannot read what a producer
// with writer writes.
func canRead(reader, writer *parsed) []incompat {
	if reader.typ != writer.typ {
		return []incompat{{"SCHEMA_TYPE_CHANGED", "#", fmt.Sprintf("schema type changed from %s to %s", writer.typ, reader.typ)}}
	}
	if reader.text == writer.text && slices.Equal(reader.refs, writer.refs) {
		return nil
	}
	switch reader.typ {
	case "AVRO":
		return avroCanRead(reader.avro, writer.avro)
	default:
		return jsonCanRead(reader.json, writer.json)
	}
}
