package schemacheck_test

import (
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/bridge/schemacheck"
	"github.com/outpost-edge/outpost/core/wire"
)

const readingV1 = `{"type":"object","properties":{"device":{"type":"string"},"temp":{"type":"number"},"ts":{"type":"integer"}},"required":["device","temp"]}`
const readingV2 = `{"type":"object","properties":{"device":{"type":"string"},"temp":{"type":"number","maximum":200},"hum":{"type":"number"}},"required":["device","temp","hum"]}`

const avroReading = `{"type":"record","name":"Reading","fields":[{"name":"device","type":"string"},{"name":"temp","type":"double"}]}`

func registry() ([]wire.SubjectRecord, []wire.SchemaRecord) {
	subjects := []wire.SubjectRecord{
		{V: 1, Subject: "readings-value", NextVersion: 3, Versions: []wire.SubjectVersion{{Version: 1, ID: 1}, {Version: 2, ID: 2}}},
		{V: 1, Subject: "avro-value", NextVersion: 2, Versions: []wire.SubjectVersion{{Version: 1, ID: 3}}},
	}
	schemas := []wire.SchemaRecord{
		{V: 1, ID: 1, Type: wire.SchemaTypeJSON, Schema: readingV1},
		{V: 1, ID: 2, Type: wire.SchemaTypeJSON, Schema: readingV2},
		{V: 1, ID: 3, Type: wire.SchemaTypeAvro, Schema: avroReading},
	}
	return subjects, schemas
}

func newChecker(t *testing.T, policy schemacheck.Policy, topics ...route.TopicSpec) (*schemacheck.Checker, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := schemacheck.New(schemacheck.Config{Topics: topics, OnUnknown: policy, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return c, reg
}

func header(v schemacheck.Verdict, key string) string {
	for _, h := range v.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestCheckJSON(t *testing.T) {
	c, reg := newChecker(t, schemacheck.PolicyRefuse,
		route.TopicSpec{Name: "readings", Partitions: 2, SchemaSubject: "readings-value"},
		route.TopicSpec{Name: "pinned", Partitions: 2, SchemaSubject: "readings-value", SchemaVersion: 1},
		route.TopicSpec{Name: "free", Partitions: 2})
	c.Update(registry())

	v2ok := []byte(`{"device":"d1","temp":21.5,"hum":40}`)
	v1ok := []byte(`{"device":"d1","temp":21.5}`)
	bad := []byte(`{"device":"d1","temp":"hot","hum":40}`)
	cases := []struct {
		name       string
		p          schemacheck.Publish
		refuse     bool
		redirect   string
		reasonHas  string
		wantID     string
		wantHeader map[string]string
	}{
		{name: "latest ok", p: schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: v2ok}, wantID: "2"},
		{name: "no schema topic", p: schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "free", Payload: []byte("not json")}},
		{name: "mqtt5 qos1 bad refused", p: schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: bad},
			refuse: true, reasonHas: "schema readings-value v2: at '/temp'"},
		{name: "mqtt5 qos2 not json refused", p: schemacheck.Publish{Protocol: 5, QoS: 2, LogTopic: "readings", Payload: []byte("{")},
			refuse: true, reasonHas: "not JSON"},
		{name: "mqtt5 qos0 bad dead-lettered", p: schemacheck.Publish{Protocol: 5, QoS: 0, LogTopic: "readings", Payload: bad},
			redirect: "readings.dead", wantHeader: map[string]string{"schema.subject": "readings-value", "schema.version": "2", "schema.id": "2"}},
		{name: "mqtt311 qos1 bad dead-lettered", p: schemacheck.Publish{Protocol: 4, QoS: 1, LogTopic: "readings", Payload: v1ok},
			redirect: "readings.dead", wantHeader: map[string]string{"schema.error": "at '/': missing property 'hum'"}},
		{name: "pinned v1 accepts v1 payload", p: schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "pinned", Payload: v1ok}, wantID: "1"},
		{name: "named id 1 by user property", p: schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: v1ok,
			UserProperties: []packets.UserProperty{{Key: "schema-id", Val: "1"}}}, wantID: "1"},
		{name: "named id by content type", p: schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: v1ok,
			ContentType: "application/json; schema-id=1"}, wantID: "1"},
		{name: "named id checks that version", p: schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "pinned", Payload: []byte(`{"device":"d","temp":300,"hum":1}`),
			UserProperties: []packets.UserProperty{{Key: "schema-id", Val: "2"}}}, refuse: true, reasonHas: "v2: at '/temp'"},
		{name: "named id of another subject", p: schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: v1ok,
			UserProperties: []packets.UserProperty{{Key: "schema-id", Val: "3"}}}, refuse: true, reasonHas: "schema-id 3 is not a version of subject"},
		{name: "named id garbage", p: schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: v2ok,
			UserProperties: []packets.UserProperty{{Key: "schema-id", Val: "x"}}}, refuse: true, reasonHas: "not a positive decimal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := c.Check(tc.p)
			if v.Refuse != tc.refuse || v.RedirectTo != tc.redirect {
				t.Fatalf("verdict %+v, want refuse=%v redirect=%q", v, tc.refuse, tc.redirect)
			}
			if tc.refuse && (v.Code != 0x99 || !strings.Contains(v.Reason, tc.reasonHas)) {
				t.Fatalf("refusal code %#x reason %q, want 0x99 and %q", v.Code, v.Reason, tc.reasonHas)
			}
			if got := header(v, "schema.id"); !tc.refuse && tc.redirect == "" && got != tc.wantID {
				t.Fatalf("schema.id header %q, want %q", got, tc.wantID)
			}
			for k, want := range tc.wantHeader {
				if got := header(v, k); got != want {
					t.Fatalf("header %s = %q, want %q (headers %v)", k, got, want, v.Headers)
				}
			}
		})
	}
	if got := testutil.ToFloat64(c.ViolationsCounter("readings-value", "invalid", "refused")); got != 3 {
		t.Fatalf("refused invalid = %v, want 3", got)
	}
	if got := testutil.ToFloat64(c.ViolationsCounter("readings-value", "invalid", "dead_lettered")); got != 2 {
		t.Fatalf("dead-lettered invalid = %v, want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, "outpost_schema_violations_total"); err != nil || n == 0 {
		t.Fatalf("violations metric: %d series, %v", n, err)
	}
}

func TestCheckAvro(t *testing.T) {
	c, _ := newChecker(t, schemacheck.PolicyRefuse, route.TopicSpec{Name: "av", Partitions: 1, SchemaSubject: "avro-value"})
	c.Update(registry())
	// Avro binary: string "d1" (zigzag length 4 = 0x04), double 21.5 LE.
	good := []byte{0x04, 'd', '1', 0, 0, 0, 0, 0, 0x80, 0x35, 0x40}
	if v := c.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "av", Payload: good}); v.Refuse || v.RedirectTo != "" || header(v, "schema.id") != "3" {
		t.Fatalf("good avro: %+v", v)
	}
	for name, p := range map[string][]byte{"short": good[:5], "trailing": append(append([]byte{}, good...), 1), "json": []byte(`{"device":"d1"}`)} {
		if v := c.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "av", Payload: p}); !v.Refuse {
			t.Fatalf("%s avro payload accepted: %+v", name, v)
		}
	}
}

func TestUnknownSchemaPolicy(t *testing.T) {
	topics := []route.TopicSpec{{Name: "readings", Partitions: 1, SchemaSubject: "readings-value"}, {Name: "pin9", Partitions: 1, SchemaSubject: "readings-value", SchemaVersion: 9}}
	ok := []byte(`{"device":"d1","temp":21.5,"hum":40}`)

	refuse, _ := newChecker(t, "", topics...)
	if got := refuse.Unknown(); len(got) != 2 || !strings.Contains(got["readings"], "not known at this node") {
		t.Fatalf("Unknown() before any update = %v", got)
	}
	v := refuse.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: ok})
	if !v.Refuse || !strings.Contains(v.Reason, "not known at this node") {
		t.Fatalf("refuse policy, unknown subject: %+v", v)
	}
	v = refuse.Check(schemacheck.Publish{Protocol: 4, QoS: 1, LogTopic: "readings", Payload: ok})
	if v.RedirectTo != "readings.dead" || !strings.Contains(header(v, "schema.error"), "not known") || header(v, "schema.id") != "" {
		t.Fatalf("refuse policy, 3.1.1: %+v", v)
	}
	refuse.Update(registry())
	if v := refuse.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: ok}); v.Refuse || header(v, "schema.id") != "2" {
		t.Fatalf("after the update the subject is known: %+v", v)
	}
	if v := refuse.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "pin9", Payload: ok}); !v.Refuse || !strings.Contains(v.Reason, "version 9 is not known") {
		t.Fatalf("pinned version unknown: %+v", v)
	}
	// A named ID newer than the node's copy is unknown too.
	if v := refuse.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: ok,
		UserProperties: []packets.UserProperty{{Key: "schema-id", Val: "77"}}}); !v.Refuse {
		t.Fatalf("unknown named id accepted: %+v", v)
	}

	accept, _ := newChecker(t, schemacheck.PolicyAccept, topics...)
	if v := accept.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: []byte("anything")}); v.Refuse || v.RedirectTo != "" || len(v.Headers) != 0 {
		t.Fatalf("accept policy, unknown subject: %+v", v)
	}
	accept.Update(registry())
	if v := accept.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "readings", Payload: []byte("anything")}); !v.Refuse {
		t.Fatalf("accept policy still checks a known schema: %+v", v)
	}
}

// A schema that does not compile at the edge counts as unknown, and does
// not stop the others.
func TestBadSchemaIsUnknown(t *testing.T) {
	c, _ := newChecker(t, schemacheck.PolicyRefuse,
		route.TopicSpec{Name: "a", Partitions: 1, SchemaSubject: "bad"},
		route.TopicSpec{Name: "b", Partitions: 1, SchemaSubject: "readings-value"})
	subjects, schemas := registry()
	subjects = append(subjects, wire.SubjectRecord{V: 1, Subject: "bad", NextVersion: 2, Versions: []wire.SubjectVersion{{Version: 1, ID: 9}}})
	schemas = append(schemas, wire.SchemaRecord{V: 1, ID: 9, Type: wire.SchemaTypeJSON, Schema: `{"type":"nonsense"}`})
	c.Update(subjects, schemas)
	if v := c.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "a", Payload: []byte(`{}`)}); !v.Refuse || !strings.Contains(v.Reason, "does not compile") {
		t.Fatalf("bad schema: %+v", v)
	}
	if v := c.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "b", Payload: []byte(`{"device":"d","temp":1,"hum":2}`)}); v.Refuse {
		t.Fatalf("good schema beside a bad one: %+v", v)
	}
}

// JSON Schema references resolve from the node's copy.
func TestReferences(t *testing.T) {
	c, _ := newChecker(t, schemacheck.PolicyRefuse, route.TopicSpec{Name: "r", Partitions: 1, SchemaSubject: "order"})
	subjects := []wire.SubjectRecord{
		{V: 1, Subject: "address", NextVersion: 2, Versions: []wire.SubjectVersion{{Version: 1, ID: 1}}},
		{V: 1, Subject: "order", NextVersion: 2, Versions: []wire.SubjectVersion{{Version: 1, ID: 2}}},
	}
	schemas := []wire.SchemaRecord{
		{V: 1, ID: 1, Type: wire.SchemaTypeJSON, Schema: `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`},
		{V: 1, ID: 2, Type: wire.SchemaTypeJSON, Schema: `{"type":"object","properties":{"to":{"$ref":"address.json"}}}`,
			References: []wire.SchemaReference{{Name: "address.json", Subject: "address", Version: 1}}},
	}
	c.Update(subjects, schemas)
	if v := c.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "r", Payload: []byte(`{"to":{"city":"Oslo"}}`)}); v.Refuse {
		t.Fatalf("valid: %+v", v)
	}
	if v := c.Check(schemacheck.Publish{Protocol: 5, QoS: 1, LogTopic: "r", Payload: []byte(`{"to":{}}`)}); !v.Refuse || !strings.Contains(v.Reason, "city") {
		t.Fatalf("invalid through the reference: %+v", v)
	}
}

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]schemacheck.Policy{"": schemacheck.PolicyRefuse, "refuse": schemacheck.PolicyRefuse, "accept": schemacheck.PolicyAccept} {
		if got, err := schemacheck.ParsePolicy(in); err != nil || got != want {
			t.Fatalf("ParsePolicy(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := schemacheck.ParsePolicy("drop"); err == nil {
		t.Fatal("ParsePolicy(drop) succeeded")
	}
}
