package upstream

import (
	"testing"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// The schema ID the edge check wrote travels as Record.SchemaID (and so
// as Outpost-Schema-Id); a malformed one stays a user header only.
func TestToWireSchemaID(t *testing.T) {
	cases := []struct {
		value string
		want  int64
	}{{"7", 7}, {"0", 0}, {"-3", 0}, {"x", 0}, {"99999999999", 0}}
	for _, c := range cases {
		r := log.Record{Value: []byte("{}"), Headers: []log.Header{
			{Key: wire.RecordHeaderMQTTTopic, Value: []byte("a/b")},
			{Key: wire.RecordHeaderSchemaID, Value: []byte(c.value)},
		}}
		w := toWire(&r)
		if w.SchemaID != c.want || w.MQTTTopic != "a/b" || len(w.Headers) != 2 {
			t.Fatalf("schema.id %q: SchemaID %d MQTTTopic %q headers %d, want %d", c.value, w.SchemaID, w.MQTTTopic, len(w.Headers), c.want)
		}
		m, err := wire.NewMsg("outpost", wire.Origin{Site: "s", Node: "n", Topic: "t", Partition: 0}, w)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(wire.HeaderSchemaID); (c.want == 0) != (got == "") {
			t.Fatalf("schema.id %q: %s = %q", c.value, wire.HeaderSchemaID, got)
		}
	}
}
