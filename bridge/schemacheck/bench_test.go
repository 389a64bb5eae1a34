package schemacheck_test

import (
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/bridge/schemacheck"
)

// reading150 is a typical ~150-byte JSON reading.
var reading150 = []byte(`{"device":"pump-station-07/sensor-3","temp":21.53,"hum":40.2,"ts":1764768000123,"site":"farm-north","fw":"2.4.1","battery":87,"ok":true,"rssi":-71}`)

const benchSchema = `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",` +
	`"properties":{"device":{"type":"string","maxLength":64},"temp":{"type":"number","minimum":-60,"maximum":200},` +
	`"hum":{"type":"number","minimum":0,"maximum":100},"ts":{"type":"integer"},"site":{"type":"string"},` +
	`"fw":{"type":"string","pattern":"^[0-9]+\\.[0-9]+\\.[0-9]+$"},"battery":{"type":"integer","minimum":0,"maximum":100},"ok":{"type":"boolean"}},` +
	`"required":["device","temp","hum","ts"]}`

// BenchmarkCheckJSON150: the whole check of a ~150-byte JSON reading
// (decode + validate + verdict). The bar is ≤ 10 µs on the test
// machine. "full": a schema with a pattern, outside the fast path's
// subset (jsonschema decodes and validates); "fast": the same schema
// without the pattern, accepted by the fast path (fast.go).
func BenchmarkCheckJSON150(b *testing.B) {
	for _, bc := range []struct{ name, schema string }{
		{"full", benchSchema},
		{"fast", strings.Replace(benchSchema, `,"pattern":"^[0-9]+\\.[0-9]+\\.[0-9]+$"`, "", 1)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			subjects, schemas := registry()
			schemas[1].Schema = bc.schema
			c, err := schemacheck.New(schemacheck.Config{Topics: []route.TopicSpec{{Name: "j", Partitions: 1, SchemaSubject: "readings-value"}}})
			if err != nil {
				b.Fatal(err)
			}
			c.Update(subjects, schemas)
			p := schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "j", Payload: reading150}
			if v := c.Check(p); v.Refuse || v.RedirectTo != "" {
				b.Fatalf("bench payload refused: %+v", v)
			}
			b.SetBytes(int64(len(reading150)))
			b.ReportAllocs()
			for b.Loop() {
				c.Check(p)
			}
		})
	}
}

// BenchmarkCheckNoSchema: a publish to a topic without a schema.
func BenchmarkCheckNoSchema(b *testing.B) {
	c, err := schemacheck.New(schemacheck.Config{Topics: []route.TopicSpec{{Name: "j", Partitions: 1, SchemaSubject: "readings-value"}}})
	if err != nil {
		b.Fatal(err)
	}
	c.Update(registry())
	p := schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "other", Payload: reading150}
	b.ReportAllocs()
	for b.Loop() {
		c.Check(p)
	}
}
