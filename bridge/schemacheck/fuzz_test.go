package schemacheck_test

import (
	"testing"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/bridge/schemacheck"
)

// FuzzCheck: arbitrary payloads, content types and schema-id properties
// never crash the check, and every verdict is one the pipeline can obey:
// a refusal only for MQTT 5 QoS 1/2, with 0x99 and a bounded reason; a
// redirect only to the topic's dead-letter topic; an accepted record
// carries the schema ID. CI runs the seed corpus; `go test -fuzz
// FuzzCheck ./bridge/schemacheck` explores.
func FuzzCheck(f *testing.F) {
	c, err := schemacheck.New(schemacheck.Config{Topics: []route.TopicSpec{
		{Name: "j", Partitions: 1, SchemaSubject: "readings-value"},
		{Name: "a", Partitions: 1, SchemaSubject: "avro-value"},
	}})
	if err != nil {
		f.Fatal(err)
	}
	c.Update(registry())
	f.Add([]byte(`{"device":"d1","temp":21.5,"hum":40}`), "", "", byte(5), byte(1), false)
	f.Add([]byte(`{"device":"d1","temp":"x"}`), "application/json; schema-id=1", "", byte(4), byte(0), false)
	f.Add([]byte{0x04, 'd', '1', 0, 0, 0, 0, 0, 0x80, 0x35, 0x40}, "", "3", byte(5), byte(2), true)
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`), "text/plain; schemaId=\"2\"", "-1", byte(5), byte(1), false)
	f.Add([]byte{0xff, 0xfe, 0x00}, "a/b; schema-id=99999999999", "\x00", byte(5), byte(0), true)
	f.Fuzz(func(t *testing.T, payload []byte, contentType, id string, proto, qos byte, avro bool) {
		proto, qos = 4+proto%2, qos%3
		topic := "j"
		if avro {
			topic = "a"
		}
		p := schemacheck.Publish{Protocol: proto, QoS: qos, LogTopic: topic, Payload: payload, ContentType: contentType}
		if id != "" {
			p.UserProperties = []packets.UserProperty{{Key: "schema-id", Val: id}}
		}
		v := c.Check(p)
		switch {
		case v.Refuse:
			if proto != 5 || qos == 0 || v.Code != 0x99 || v.Reason == "" || len(v.Reason) > 256 || !utf8.ValidString(v.Reason) && utf8.ValidString(id) {
				t.Fatalf("bad refusal %+v for proto %d qos %d", v, proto, qos)
			}
		case v.RedirectTo != "":
			if v.RedirectTo != topic+".dead" || (proto == 5 && qos > 0) {
				t.Fatalf("bad redirect %+v for proto %d qos %d", v, proto, qos)
			}
		default:
			if header(v, "schema.id") == "" {
				t.Fatalf("accepted without a schema id: %+v", v)
			}
		}
	})
}
